"""The shared aiohttp shell: error JSON, body limits, internal auth, health and metrics."""

import asyncpg
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from noetl_common.auth import bearer_matches
from noetl_common.errors import ApiError, json_response, read_json
from noetl_common.http import add_readiness_check, build_app


class Body(msgspec.Struct):
    name: str
    count: int = 0


async def _echo(request: web.Request) -> web.Response:
    body = await read_json(request, Body)
    return json_response({"name": body.name, "count": body.count})


async def _conflict(request: web.Request) -> web.Response:
    raise ApiError(409, "already there", "active_claim", owner="w1")


async def _boom(request: web.Request) -> web.Response:
    raise RuntimeError("password=hunter2")


async def _internal(request: web.Request) -> web.Response:
    return json_response({"ok": True})


def make(token="s3cret", ready=True, api_token=None):
    app = build_app(service="test", shard="0", max_body_bytes=2048, internal_token=token, api_token=api_token)
    app.router.add_post("/echo", _echo)
    app.router.add_get("/conflict", _conflict)
    app.router.add_get("/boom", _boom)
    app.router.add_get("/api/internal/ping", _internal)

    async def check():
        if not ready:
            raise ConnectionError("db down")

    add_readiness_check(app, "db", check)
    return app


@pytest.fixture
async def client():
    async with TestClient(TestServer(make())) as c:
        yield c


async def test_decode_and_errors(client):
    r = await client.post("/echo", data=b'{"name": "a", "count": 2, "extra": 1}')
    assert r.status == 200 and await r.json() == {"name": "a", "count": 2}
    r = await client.post("/echo", data=b'{"name": ')
    body = await r.json()
    assert r.status == 400 and body["status"] == 400 and "malformed JSON" in body["error"]
    r = await client.post("/echo", data=b'{"name": 5}')
    body = await r.json()
    assert r.status == 422 and "$.name" in body["error"]
    r = await client.post("/echo", data=b'{"count": 1}')
    assert r.status == 422 and "name" in (await r.json())["error"]
    r = await client.post("/echo", data=b"")
    assert r.status == 400


async def test_oversized_body_is_413(client):
    r = await client.post("/echo", data=b'{"name": "' + b"x" * 5000 + b'"}')
    body = await r.json()
    assert r.status == 413 and body["code"] == "payload_too_large"


async def test_api_error_code_and_extra(client):
    r = await client.get("/conflict")
    assert r.status == 409 and await r.json() == {"error": "already there", "status": 409,
                                                  "code": "active_claim", "owner": "w1",
                                                  "detail": {"code": "active_claim", "message": "already there"}}


async def test_unhandled_error_is_json_500_without_internals(client):
    r = await client.get("/boom")
    text = await r.text()
    assert r.status == 500 and "hunter2" not in text and (await r.json())["code"] == "internal_error"


async def test_unknown_route_is_json_404(client):
    r = await client.get("/nope")
    assert r.status == 404 and "/nope" in (await r.json())["error"]


@pytest.mark.parametrize(("header", "status"), [
    (None, 403), ("Bearer wrong", 403), ("Basic s3cret", 403), ("Bearer", 403), ("Bearer s3cret", 200),
])
async def test_internal_auth(client, header, status):
    headers = {"Authorization": header} if header else {}
    r = await client.get("/api/internal/ping", headers=headers)
    assert r.status == status


async def test_internal_routes_unavailable_without_token():
    async with TestClient(TestServer(make(token=None))) as c:
        r = await c.get("/api/internal/ping", headers={"Authorization": "Bearer anything"})
        assert r.status == 503


async def test_health_ready_metrics(client):
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    await client.post("/echo", data=b'{"name": "a"}')
    text = await (await client.get("/metrics")).text()
    assert 'noetl_http_requests_total{method="POST",route="/echo",service="test",shard="0",status="200"} 1.0' in text


async def test_not_ready_names_the_failing_dependency():
    async with TestClient(TestServer(make(ready=False))) as c:
        r = await c.get("/readyz")
        body = await r.json()
        assert r.status == 503 and "db down" in body["failures"]["db"]


async def test_api_token_guards_every_public_route_but_probes():
    async with TestClient(TestServer(make(api_token="pub-tok"))) as c:
        for header in (None, "Bearer wrong", "pub-tok"):
            r = await c.post("/echo", data=b'{"name": "a"}', headers={"Authorization": header} if header else {})
            body = await r.json()
            assert r.status == 401 and body["code"] == "unauthorized" and "pub-tok" not in str(body)
            assert r.headers["WWW-Authenticate"] == "Bearer"
        for token in ("pub-tok", "s3cret"):  # the API token, or the internal one workers carry
            r = await c.post("/echo", data=b'{"name": "a"}', headers={"Authorization": f"Bearer {token}"})
            assert r.status == 200
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await c.get(path)).status == 200, path
        r = await c.get("/api/internal/ping", headers={"Authorization": "Bearer pub-tok"})
        assert r.status == 403  # the API token does not open internal routes
        r = await c.options("/echo", headers={"Origin": "http://ui", "Access-Control-Request-Method": "POST"})
        assert r.status == 204  # a browser's preflight carries no token


async def test_no_api_token_means_public_routes_are_open(client):
    assert (await client.post("/echo", data=b'{"name": "a"}')).status == 200


async def test_noetl_health_paths():
    """NoETL's liveness `/health` and readiness `/api/health/ready` (503 naming the failure)."""
    async with TestClient(TestServer(make(ready=True))) as c:
        assert await (await c.get("/health")).json() == {"status": "ok"}
        r = await c.get("/api/health/ready")
        assert r.status == 200 and (await r.json())["status"] == "ready"
    async with TestClient(TestServer(make(ready=False))) as c:
        assert (await c.get("/health")).status == 200  # liveness does not depend on the database
        r = await c.get("/api/health/ready")
        body = await r.json()
        assert r.status == 503 and body["status"] == "not_ready"
        assert "db" in body["reason"] and "db down" in body["error"]


def test_bearer_matches():
    assert bearer_matches("bearer tok", "tok")
    assert not bearer_matches("Bearer tok2", "tok")
    assert not bearer_matches(None, "tok")


async def _db_down(request: web.Request) -> web.Response:
    raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")


async def _int4_overflow(request: web.Request) -> web.Response:
    raise asyncpg.DataError("invalid input for query argument $1: 10878043251165 (value out of int32 range)")


async def _terminated(request: web.Request) -> web.Response:
    # what a pooled connection Postgres terminated during a restart raises when used
    raise asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress")


async def _no_slice(request: web.Request) -> web.Response:
    # a write past the history slices the shard created ahead (no default partition)
    raise asyncpg.CheckViolationError('no partition of relation "event" found for row')


async def _other_check(request: web.Request) -> web.Response:
    raise asyncpg.CheckViolationError('new row for relation "x" violates check constraint "x_check"')


async def _refused(request: web.Request) -> web.Response:
    raise ConnectionRefusedError(111, "Connect call failed")


async def _slow(request: web.Request) -> web.Response:
    import asyncio
    await asyncio.sleep(5)
    return json_response({"late": True})


async def _stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b"data: 1\n\n")
    return response


async def test_an_unreachable_database_is_a_503_to_retry_not_a_500():
    app = build_app(service="test", max_body_bytes=2048)
    app.router.add_get("/down", _db_down)
    app.router.add_get("/refused", _refused)
    app.router.add_get("/terminated", _terminated)
    async with TestClient(TestServer(app)) as c:
        for path in ("/down", "/refused", "/terminated"):
            r = await c.get(path)
            body = await r.json()
            assert r.status == 503 and body["code"] == "db_unavailable" and r.headers["Retry-After"] == "2"
            assert "111" not in body["error"] and "closed" not in body["error"]  # internals stay in the log


async def _cancelled(request: web.Request) -> web.Response:
    raise asyncpg.QueryCanceledError("canceling statement due to statement timeout")


async def _deadlock(request: web.Request) -> web.Response:
    raise asyncpg.DeadlockDetectedError("deadlock detected")


async def test_a_statement_the_database_gave_up_on_is_a_503_to_retry_not_a_500():
    app = build_app(service="test", max_body_bytes=2048)
    app.router.add_get("/cancelled", _cancelled)
    app.router.add_get("/deadlock", _deadlock)
    async with TestClient(TestServer(app)) as c:
        for path in ("/cancelled", "/deadlock"):
            r = await c.get(path)
            body = await r.json()
            assert r.status == 503 and body["code"] == "db_busy" and r.headers["Retry-After"] == "2", (path, body)


async def test_a_value_the_database_refuses_is_a_422_not_a_500():
    # The net under handlers' own bounds (the fuzzer found an unbounded int reaching an int4 column).
    app = build_app(service="test", max_body_bytes=2048)
    app.router.add_get("/overflow", _int4_overflow)
    async with TestClient(TestServer(app)) as c:
        r = await c.get("/overflow")
        body = await r.json()
        assert r.status == 422 and body["code"] == "validation_error" and "int32" in body["error"]


async def test_a_write_past_the_history_slices_is_a_503_to_retry_and_other_checks_a_500():
    app = build_app(service="test", max_body_bytes=2048)
    app.router.add_get("/no-slice", _no_slice)
    app.router.add_get("/other", _other_check)
    async with TestClient(TestServer(app)) as c:
        r = await c.get("/no-slice")
        body = await r.json()
        assert r.status == 503 and body["code"] == "history_slice_missing" and r.headers["Retry-After"] == "2"
        assert "event" not in body["error"]
        r = await c.get("/other")
        assert r.status == 500 and (await r.json())["code"] == "internal_error"


async def test_a_request_past_its_time_limit_is_a_504_and_streams_are_exempt():
    app = build_app(service="test", max_body_bytes=2048, request_timeout=0.2)
    app.router.add_get("/slow", _slow)
    app.router.add_get("/x/stream", _stream)
    async with TestClient(TestServer(app)) as c:
        r = await c.get("/slow")
        assert r.status == 504 and (await r.json())["code"] == "request_timeout"
        r = await c.get("/x/stream")
        assert r.status == 200 and await r.read() == b"data: 1\n\n"


async def test_cors_on_every_answer_and_preflight_before_authentication():
    async with TestClient(TestServer(make())) as c:
        for r in (await c.post("/echo", json={"name": "a"}), await c.get("/conflict"),
                  await c.get("/api/internal/ping")):
            assert r.headers["Access-Control-Allow-Origin"] == "*"
        r = await c.options("/api/internal/ping", headers={"Origin": "http://ui", "Access-Control-Request-Method": "GET"})
        assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == "*"


async def test_requests_past_the_in_flight_bound_get_429_and_probes_still_answer():
    import asyncio
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return json_response({"ok": True})

    app = build_app(service="test", max_body_bytes=2048, internal_token="t", max_in_flight=2)
    app.router.add_get("/slow", slow)
    app.router.add_get("/api/internal/slow", slow)
    async with TestClient(TestServer(app)) as c:
        held = [asyncio.create_task(c.get("/slow")) for _ in range(2)]
        await asyncio.sleep(0.1)
        r = await c.get("/slow")
        body = await r.json()
        assert r.status == 429 and body["code"] == "overloaded" and r.headers["Retry-After"] == "1"
        assert (await c.get("/readyz")).status == 200
        internal = asyncio.create_task(c.get("/api/internal/slow", headers={"Authorization": "Bearer t"}))
        await asyncio.sleep(0.1)
        release.set()
        assert [x.status for x in await asyncio.gather(*held, internal)] == [200, 200, 200]
        assert (await c.get("/slow")).status == 200  # the bound frees as requests finish


async def test_root_and_status_name_the_service(client):
    root = await (await client.get("/")).json()
    assert root["service"] == "test" and root["status"] == "ok" and "running" in root["message"]
    status = await client.get("/api/status")
    assert status.status == 200
    body = await status.json()
    assert body["service"] == "test" and body["status"] == "ok" and body["version"] == root["version"]
    assert body["process"]["pid"] > 0 and body["process"]["uptime_seconds"] >= 0
