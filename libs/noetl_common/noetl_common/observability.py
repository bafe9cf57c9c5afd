"""Prometheus metrics and JSON logging shared by every service.

Each app gets its own CollectorRegistry (passed in), so several services can live in one test
process without colliding. The execution id travels in a ContextVar so every log line written
while handling a request carries it.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

execution_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("execution_id", default=None)

REGISTRY_KEY = web.AppKey("registry", CollectorRegistry)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class HttpMetrics:
    """Request count and latency by route template and status, labelled with the shard."""

    def __init__(self, registry: CollectorRegistry, service: str, shard: str = "") -> None:
        self.registry = registry
        self.shard = shard
        self.requests = Counter(
            "noetl_http_requests_total", "HTTP requests handled",
            ["service", "shard", "method", "route", "status"], registry=registry)
        self.latency = Histogram(
            "noetl_http_request_duration_seconds", "HTTP request latency",
            ["service", "shard", "method", "route"], buckets=LATENCY_BUCKETS, registry=registry)
        self.up = Gauge("noetl_up", "1 while the process serves", ["service", "shard"], registry=registry)
        self.up.labels(service, shard).set(1)
        self.service = service

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(self.service, self.shard, method, route, str(status)).inc()
        self.latency.labels(self.service, self.shard, method, route).observe(seconds)


HTTP_METRICS_KEY = web.AppKey("http_metrics", HttpMetrics)


def route_name(request: web.Request) -> str:
    """The route template (bounded cardinality), not the concrete path."""
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


def metrics_middleware(metrics: HttpMetrics) -> Any:
    @web.middleware
    async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        status = 500
        token = execution_id_var.set(request.match_info.get("execution_id")
                                     or request.headers.get("X-Execution-ID"))
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            execution_id_var.reset(token)
            metrics.observe(request.method, route_name(request), status, time.perf_counter() - start)

    return measure


async def metrics_handler(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY_KEY]
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str, shard: str = "") -> None:
        super().__init__()
        self.service = service
        self.shard = shard

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if self.shard:
            entry["shard"] = self.shard
        execution_id = getattr(record, "execution_id", None) or execution_id_var.get()
        if execution_id:
            entry["execution_id"] = str(execution_id)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(service: str, level: str = "INFO", shard: str = "") -> None:
    """JSON lines on stderr for the whole process (called once, from a service's main)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service, shard))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
