"""The aiohttp application shell every service shares: error JSON, metrics, health, readiness."""

from __future__ import annotations

from typing import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry

from .auth import internal_auth_middleware, public_auth_middleware
from .errors import error_middleware, json_response
from .guards import add_cors_headers, admission_middleware, deadline_middleware, preflight_middleware
from . import tracing
from .observability import (HTTP_METRICS_KEY, REGISTRY_KEY, HttpMetrics, metrics_handler, metrics_middleware,
                            tracing_middleware)

ReadinessCheck = Callable[[], Awaitable[None]]  # raises when a dependency is unreachable

READINESS_KEY = web.AppKey("readiness_checks", list)


# NoETL answers 504 past its limit instead of letting a client wait forever.
DEFAULT_REQUEST_TIMEOUT_SECONDS = 60.0
DEFAULT_MAX_IN_FLIGHT = 512


def build_app(*, service: str, shard: str = "", max_body_bytes: int, internal_token: str | None = None,
              api_token: str | None = None, request_timeout: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
              max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> web.Application:
    registry = CollectorRegistry()
    metrics = HttpMetrics(registry, service, shard)
    # The span middleware exists only when tracing is on: off, a request pays nothing for it.
    traced = [tracing_middleware(shard)] if tracing.enabled() else []
    gates = [internal_auth_middleware(internal_token)]
    if api_token:
        gates.append(public_auth_middleware(api_token, internal_token))
    app = web.Application(
        client_max_size=max_body_bytes,
        middlewares=[metrics_middleware(metrics, log_requests=not traced), *traced, error_middleware,
                     preflight_middleware, admission_middleware(max_in_flight), deadline_middleware(request_timeout),
                     *gates],
    )
    app.on_response_prepare.append(add_cors_headers)
    app[REGISTRY_KEY] = registry
    app[HTTP_METRICS_KEY] = metrics
    app[READINESS_KEY] = []
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/health", _healthz)            # NoETL's liveness path, same answer
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/api/health/ready", _api_ready)  # NoETL's readiness path (Rust server)
    app.router.add_get("/metrics", metrics_handler)
    return app


def add_readiness_check(app: web.Application, name: str, check: ReadinessCheck) -> None:
    app[READINESS_KEY].append((name, check))


async def _healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readiness_failures(app: web.Application) -> dict[str, str]:
    """Each registered check that fails, by name, with its reason (empty when ready)."""
    failures: dict[str, str] = {}
    for name, check in app[READINESS_KEY]:
        try:
            await check()
        except Exception as exc:  # any failure means "not ready"; the reason is shown, not raised
            failures[name] = f"{type(exc).__name__}: {exc}"[:300]
    return failures


async def _readyz(request: web.Request) -> web.Response:
    failures = await readiness_failures(request.app)
    if failures:
        return json_response({"status": "not_ready", "failures": failures}, status=503)
    return json_response({"status": "ready"})


async def _api_ready(request: web.Request) -> web.Response:
    """NoETL's shape: `{"status": "ready"}`, or 503 `{"status": "not_ready", "reason", "error"}`."""
    failures = await readiness_failures(request.app)
    if failures:
        reason = "; ".join(f"{name} failed" for name in failures)
        return json_response({"status": "not_ready", "reason": reason,
                              "error": "; ".join(f"{k}: {v}" for k, v in failures.items()),
                              "failures": failures}, status=503)
    return json_response({"status": "ready", "checks": [name for name, _ in request.app[READINESS_KEY]]})
