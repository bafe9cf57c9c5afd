"""Routes of the local test API. Query parameters are read leniently (a bad number is a 400 naming
the parameter), answers are JSON, and errors look like the e2e server's (`{"detail": ...}`)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from . import data, gateway, gcp_hosts, gcs, ibkr, identity, kube, patient_records, pft, placeholder, public_apis, pubsub, quantum
from .state import ApiState

STATE = web.AppKey("state", ApiState)


def _int(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f'{{"detail": "query parameter {name} must be an integer, got {raw!r}"}}',
                                 content_type="application/json") from None


def _float(request: web.Request, name: str, default: float) -> float:
    raw = request.query.get(name)
    try:
        return float(raw) if raw not in (None, "") else default
    except ValueError:
        raise web.HTTPBadRequest(text=f'{{"detail": "query parameter {name} must be a number"}}',
                                 content_type="application/json") from None


def _error(status: int, detail: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"detail": detail} if isinstance(detail, str) else detail, status=status,
                             headers=headers)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def echo(request: web.Request) -> web.Response:
    """An httpbin-style echo, for playbooks that default to https://httpbin.org/get."""
    body = await request.text()
    return web.json_response({"args": dict(request.query), "headers": dict(request.headers), "url": str(request.url),
                              "method": request.method, "data": body})


async def forecast(request: web.Request) -> web.Response:
    """Open-Meteo's `/v1/forecast` for `current=temperature_2m` and the legacy `current_weather=true`:
    values derived from the coordinates (the same place always gets the same weather)."""
    lat, lon = _float(request, "latitude", 0.0), _float(request, "longitude", 0.0)
    temperature = round(10 + (lat * 7 + lon * 3) % 20, 1)
    fields = [f for f in request.query.get("current", "").split(",") if f]
    body: dict[str, Any] = {
        "latitude": lat, "longitude": lon, "timezone": "GMT",
        "current_units": {"time": "iso8601", "interval": "seconds", **{f: "°C" for f in fields}},
        "current": {"time": "2026-01-01T12:00", "interval": 900, **{f: temperature for f in fields}}}
    if request.query.get("current_weather", "").lower() == "true":
        body["current_weather_units"] = {"time": "iso8601", "interval": "seconds", "temperature": "°C",
                                         "windspeed": "km/h", "winddirection": "°", "is_day": "",
                                         "weathercode": "wmo code"}
        body["current_weather"] = {"time": "2026-01-01T12:00", "interval": 900, "temperature": temperature,
                                   "windspeed": round(5 + abs(lat - lon) % 15, 1), "winddirection": 270,
                                   "is_day": 1, "weathercode": 3}
    return web.json_response(body)


async def assessments(request: web.Request) -> web.Response:
    return web.json_response(data.assessments(_int(request, "page", 1), _int(request, "pageSize", data.PAGE_SIZE)))


async def users(request: web.Request) -> web.Response:
    return web.json_response(data.users(_int(request, "offset", 0), _int(request, "limit", data.PAGE_SIZE)))


async def events(request: web.Request) -> web.Response:
    return web.json_response(data.events(request.query.get("cursor"), _int(request, "limit", data.PAGE_SIZE)))


async def flaky(request: web.Request) -> web.Response:
    """The pages named in `fail_on` answer 500 on their first request only, so one retry heals them."""
    page = _int(request, "page", 1)
    fail_on = {p.strip() for p in request.query.get("fail_on", "").split(",") if p.strip()}
    attempts = request.app[STATE].flaky_attempts
    attempts[page] += 1
    if str(page) in fail_on and attempts[page] == 1:
        return _error(500, "Simulated failure")
    return web.json_response(data.plain_page(page))


async def flaky_reset(request: web.Request) -> web.Response:
    request.app[STATE].flaky_attempts.clear()
    return web.json_response({"status": "reset", "message": "Flaky endpoint counters cleared"})


async def errors(request: web.Request) -> web.Response:
    """`error_type` picks the failure: 429/503 (with Retry-After), 500, auth (401), 403, 404, timeout."""
    kind = request.query.get("error_type")
    retry_after = {"Retry-After": str(_int(request, "retry_after", 5))}
    answers = {"429": (429, {"error": "Too Many Requests", "message": "Rate limit exceeded"}, retry_after),
               "500": (500, "Internal Server Error - simulated", None),
               "503": (503, {"error": "Service Unavailable", "message": "Server temporarily unavailable"}, retry_after),
               "auth": (401, "Unauthorized - invalid credentials", None),
               "403": (403, "Forbidden - insufficient permissions", None),
               "404": (404, "Not Found - resource does not exist", None)}
    if kind in answers:
        status, detail, headers = answers[kind]
        return _error(status, detail, headers)
    if kind == "timeout":
        await asyncio.sleep(_float(request, "delay_seconds", 30.0))
        return web.json_response({"data": [], "simulated": "timeout"})
    return web.json_response(data.plain_page(_int(request, "page", 1)))


async def rate_limited(request: web.Request) -> web.Response:
    limit = _int(request, "requests_per_second", 2)
    wait = request.app[STATE].rate.admit(limit, time.monotonic())
    if wait is not None:
        return _error(429, {"error": "Rate limit exceeded", "limit": limit},
                      {"Retry-After": str(max(1, int(wait) + 1))})
    body = data.plain_page(_int(request, "page", 1), rate_limited=True)
    return web.json_response({**body, "rate_limit": {"limit": limit}})


async def heavy(request: web.Request) -> web.Response:
    return web.json_response(data.heavy(_int(request, "page", 1), _int(request, "pageSize", 10),
                                        _int(request, "payload_kb", 10)))


async def heavy_stats(request: web.Request) -> web.Response:
    return web.json_response({"total_items": data.HEAVY_TOTAL_ITEMS, "default_payload_kb": 10})


async def chain_items(request: web.Request) -> web.Response:
    return web.json_response(data.chain_items(
        _int(request, "page", 1), _int(request, "pageSize", 25), _int(request, "total", data.CHAIN_TOTAL_ITEMS),
        _int(request, "payload_kb", 1), request.query.get("ref_mode", "linked").lower(),
        _int(request, "chain_window", 2)))


async def chain_detail(request: web.Request) -> web.Response:
    try:
        record_id = int(request.match_info["record_id"])
    except ValueError:
        return _error(400, "record_id must be an integer")
    if record_id <= 0:
        return _error(404, "record not found")
    if record_id > data.CHAIN_MAX_DETAIL_ID:
        return _error(400, f"record_id exceeds max supported value ({data.CHAIN_MAX_DETAIL_ID})")
    return web.json_response(data.chain_detail(record_id, _int(request, "payload_kb", 2),
                                               request.query.get("ref_mode", "linked").lower(),
                                               _int(request, "chain_window", 2), request.query.get("parent_ref", "")))


async def probe(request: web.Request) -> web.Response:
    """Sleeps without blocking, so overlapping callers show up in `max_active`."""
    delay = _float(request, "delay_seconds", 0.0)
    if not 0.0 <= delay <= 300.0:
        return _error(422, "delay_seconds must be between 0 and 300")
    label = request.query.get("label", "probe")
    state = request.app[STATE].probe
    began = time.monotonic()
    request_id, active_at_start = await state.enter(label, delay)
    if delay:
        await asyncio.sleep(delay)
    took = time.monotonic() - began
    snapshot = await state.leave(request_id, label, took)
    return web.json_response({"request_id": request_id, "label": label, "delay_seconds": delay,
                              "duration_seconds": round(took, 4), "active_at_start": active_at_start, **snapshot})


async def probe_reset(request: web.Request) -> web.Response:
    state = request.app[STATE].probe
    async with state.lock:
        state.reset_counts()
    return web.json_response({"status": "reset"})


async def probe_stats(request: web.Request) -> web.Response:
    state = request.app[STATE].probe
    async with state.lock:
        return web.json_response({**state.snapshot(), "recent_events": list(state.events)})


@web.middleware
async def count_requests(request: web.Request, handler: Any) -> web.StreamResponse:
    request.app[STATE].requests[request.path] += 1
    return await handler(request)


async def request_counts(request: web.Request) -> web.Response:
    """How often each path was called (tests check that a retry really went out again)."""
    return web.json_response(dict(request.app[STATE].requests))


def build_app(static_dir: str | None = None) -> web.Application:
    """`static_dir`: files served under /static/ (scripts a playbook fetches over HTTP)."""
    # 64 MiB bodies: GCS uploads (the gcs result tier, DuckDB parquet) pass aiohttp's 1 MiB default
    app = web.Application(middlewares=[count_requests], client_max_size=64 << 20)
    if static_dir:
        app.router.add_static("/static/", static_dir)
    app[STATE] = ApiState()
    app.router.add_get("/healthz", health)
    app.router.add_get("/_requests", request_counts)
    app.router.add_route("*", "/get", echo)
    app.router.add_route("*", "/anything", echo)
    app.router.add_route("*", "/anything/{tail:.*}", echo)
    app.router.add_route("*", "/post", echo)
    app.router.add_get("/v1/forecast", forecast)  # api.open-meteo.com, through the proxy (proxy.py)
    v1 = "/api/v1"
    app.router.add_get(f"{v1}/assessments", assessments)
    app.router.add_get(f"{v1}/users", users)
    app.router.add_get(f"{v1}/events", events)
    app.router.add_get(f"{v1}/flaky", flaky)
    app.router.add_post(f"{v1}/flaky/reset", flaky_reset)
    app.router.add_get(f"{v1}/errors", errors)
    app.router.add_get(f"{v1}/rate-limited", rate_limited)
    app.router.add_get(f"{v1}/heavy", heavy)
    app.router.add_get(f"{v1}/heavy/stats", heavy_stats)
    app.router.add_get(f"{v1}/reference-chain/items", chain_items)
    app.router.add_get(f"{v1}/reference-chain/detail/{{record_id}}", chain_detail)
    app.router.add_get(f"{v1}/concurrency/probe", probe)
    app.router.add_post(f"{v1}/concurrency/reset", probe_reset)
    app.router.add_get(f"{v1}/concurrency/stats", probe_stats)
    identity.add_routes(app)
    placeholder.add_routes(app)
    kube.add_routes(app)  # the Kubernetes API stand-in that runs Jobs (kube.py)
    pubsub.add_routes(app)  # Pub/Sub's REST API, as its emulator serves it (pubsub.py)
    gateway.add_routes(app)
    patient_records.add_routes(app)
    public_apis.add_routes(app)
    gcs.add_routes(app)
    gcp_hosts.add_routes(app)
    pft.add_routes(app)  # the e2e server's PFT/patient endpoints
    ibkr.add_routes(app)  # the IB Client Portal gateway (/v1/api/...)
    quantum.add_routes(app)
    return app
