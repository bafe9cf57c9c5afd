"""The aiohttp application shell every service shares: error JSON, metrics, health, readiness,
and the service's OpenAPI document (`/openapi.json`) with its browsable page (`/docs`)."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import msgspec
from aiohttp import web
from prometheus_client import CollectorRegistry

from . import about, docs_page
from .auth import internal_auth_middleware, public_auth_middleware
from .errors import error_middleware, json_response
from .guards import add_cors_headers, admission_middleware, deadline_middleware, preflight_middleware
from . import tracing
from .observability import (HTTP_METRICS_KEY, REGISTRY_KEY, HttpMetrics, metrics_handler, metrics_middleware,
                            tracing_middleware)
from .openapi import OPERATIONS, DocumentSource, Op, document, package_version, route

ReadinessCheck = Callable[[], Awaitable[None]]  # raises when a dependency is unreachable

READINESS_KEY = web.AppKey("readiness_checks", list)


# NoETL answers 504 past its limit instead of letting a client wait forever.
DEFAULT_REQUEST_TIMEOUT_SECONDS = 60.0
DEFAULT_MAX_IN_FLIGHT = 512


class Health(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct):
    status: str                                         # ready | not_ready
    failures: dict[str, str] | msgspec.UnsetType = msgspec.UNSET   # dependency -> why not


class ApiReadiness(msgspec.Struct, omit_defaults=True):
    """NoETL's readiness answer: `checks` when ready; `reason`, `error`, `failures` when not."""

    status: str                                         # ready | not_ready
    checks: list[str] | msgspec.UnsetType = msgspec.UNSET
    reason: str | msgspec.UnsetType = msgspec.UNSET
    error: str | msgspec.UnsetType = msgspec.UNSET
    failures: dict[str, str] | msgspec.UnsetType = msgspec.UNSET


def build_app(*, service: str, shard: str = "", max_body_bytes: int, internal_token: str | None = None,
              api_token: str | None = None, request_timeout: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
              max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
              openapi: DocumentSource | None = None) -> web.Application:
    """`openapi` replaces the default document (this app's own described routes); the router
    passes one that adds the shards' routes it proxies."""
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
    app[OPERATIONS] = {}
    title = f"NoETL fleet {service}"
    route(app, "GET", "/healthz", _healthz, Op(summary="Liveness", ok=Health))
    route(app, "GET", "/health", _healthz, Op(summary="Liveness (NoETL's path, same answer as /healthz)", ok=Health))
    route(app, "GET", "/readyz", _readyz, Op(summary="Readiness: every dependency answers", ok=Readiness,
                                            other=((503, Readiness),), description="503 names each failing dependency."))
    route(app, "GET", "/api/health/ready", _api_ready, Op(
        summary="Readiness in NoETL's shape (the Rust server's path)", ok=ApiReadiness,
        other=((503, ApiReadiness),), description="503 gives `reason` and `error` naming each failing check."))
    route(app, "GET", "/metrics", metrics_handler, Op(summary="Prometheus metrics", ok=str, media="text/plain"))
    route(app, "GET", "/openapi.json", _openapi_handler(openapi or _own_document(title)),
          Op(summary="This OpenAPI 3.1 document", ok=dict[str, Any]))
    route(app, "GET", "/docs", docs_page.page_handler(title), Op(summary="Browsable API documentation (Swagger UI)",
                                                                 ok=str, media="text/html"))
    route(app, "GET", "/docs/static/{name}", docs_page.asset,
          Op(summary="A file of the documentation page", media="*/*", errors=(404,)))
    about.register(app, service)
    return app


def _own_document(title: str) -> DocumentSource:
    async def source(request: web.Request) -> dict[str, Any]:
        return document(request.app, title=title, version=package_version())

    return source


def _openapi_handler(source: DocumentSource) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def openapi_json(request: web.Request) -> web.Response:
        return json_response(await source(request))

    return openapi_json


def add_readiness_check(app: web.Application, name: str, check: ReadinessCheck) -> None:
    app[READINESS_KEY].append((name, check))


async def _healthz(request: web.Request) -> web.Response:
    return json_response(Health(status="ok"))


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
        return json_response(Readiness(status="not_ready", failures=failures), status=503)
    return json_response(Readiness(status="ready"))


async def _api_ready(request: web.Request) -> web.Response:
    """NoETL's shape: `{"status": "ready"}`, or 503 `{"status": "not_ready", "reason", "error"}`."""
    failures = await readiness_failures(request.app)
    if failures:
        reason = "; ".join(f"{name} failed" for name in failures)
        return json_response(ApiReadiness(status="not_ready", reason=reason,
                                          error="; ".join(f"{k}: {v}" for k, v in failures.items()),
                                          failures=failures), status=503)
    return json_response(ApiReadiness(status="ready", checks=[name for name, _ in request.app[READINESS_KEY]]))
