"""Prometheus metrics, JSON logging and the per-request server span shared by every service.

Each app gets its own CollectorRegistry (passed in), so several services can live in one test
process without colliding. The execution id (and, in the worker, the command id) travels in a
ContextVar so every log line written while handling a request carries it; log lines written
inside a span carry its trace_id and span_id.
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

from . import tracing

execution_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("execution_id", default=None)
command_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("command_id", default=None)
request_log = logging.getLogger("noetl.http")

REGISTRY_KEY = web.AppKey("registry", CollectorRegistry)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Labelled:
    """A labelled metric's children, each made once: prometheus_client's `labels()` takes a lock
    and builds its key on every call, a few per cent of a small request's CPU in a proxy. Only for
    label values from a bounded set (route templates, statuses, shard indexes)."""

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child

    labels = __call__  # a drop-in for the metric where only its children are used


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

        self._requests, self._latency = Labelled(self.requests), Labelled(self.latency)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self._requests(self.service, self.shard, method, route, str(status)).inc()
        self._latency(self.service, self.shard, method, route).observe(seconds)


HTTP_METRICS_KEY = web.AppKey("http_metrics", HttpMetrics)


def route_name(request: web.Request) -> str:
    """The route template (bounded cardinality), not the concrete path."""
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


def log_request(request: web.Request, status: int, seconds: float) -> None:
    """A DEBUG line per request (NOETL_LOG_LEVEL=DEBUG): one level check per request otherwise."""
    if request_log.isEnabledFor(logging.DEBUG):
        request_log.debug("%s %s -> %s in %.1f ms", request.method, request.path, status, seconds * 1000)


def metrics_middleware(metrics: HttpMetrics, *, log_requests: bool = True) -> Any:
    """`log_requests`: write the request's DEBUG line here, or leave it to the tracing middleware
    (inside this one), which writes it within the span so it carries the trace id."""

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
            elapsed = time.perf_counter() - start
            if log_requests:
                log_request(request, status, elapsed)
            execution_id_var.reset(token)
            metrics.observe(request.method, route_name(request), status, elapsed)

    return measure


def tracing_middleware(shard: str = "") -> Any:
    """A SERVER span per request, child of the caller's `traceparent`: named by route template,
    with status, shard and the execution id the request is about (known by the end of it).
    Installed only when tracing is on (build_app), inside the metrics middleware (so the
    execution id is set) and outside the error middleware (so it sees the final status)."""
    tracer = tracing.tracer("noetl.http")

    @web.middleware
    async def traced(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        route = route_name(request)
        parent = tracing.PROPAGATOR.extract(request.headers)
        with tracer.start_as_current_span(f"{request.method} {route}", context=parent, kind=tracing.SpanKind.SERVER,
                                          record_exception=False, set_status_on_exception=False) as span:
            span.set_attribute("http.request.method", request.method)
            span.set_attribute("http.route", route)
            span.set_attribute("url.path", request.path)  # the router's one route is a catch-all
            if shard:
                span.set_attribute("noetl.shard", shard)
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(tracing.StatusCode.ERROR)
                execution_id = execution_id_var.get()
                if execution_id:
                    span.set_attribute("noetl.execution_id", execution_id)
                log_request(request, status, time.perf_counter() - start)

    return traced


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
        command_id = getattr(record, "command_id", None) or command_id_var.get()
        if command_id:
            entry["command_id"] = str(command_id)
        fields = getattr(record, "fields", None)  # logger.x(..., extra={"fields": {...}}): more keys
        if isinstance(fields, dict):
            for key, value in fields.items():
                entry.setdefault(str(key), value)
        ids = tracing.log_ids()
        if ids is not None:
            entry["trace_id"], entry["span_id"] = ids
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
