"""A scripted HTTP peer for the worker's control-plane client: each route answers from a queue of
(status, body, headers) and records what it received."""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from typing import Any, AsyncIterator

import aiohttp
import msgspec
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer


@pytest.fixture(autouse=True)
def duckdb_data_dir(tmp_path_factory, monkeypatch):
    """The duckdb tool keeps one database file per execution id under NOETL_DATA_DIR: tests reuse
    small ids, so each test gets a directory of its own."""
    monkeypatch.setenv("NOETL_DATA_DIR", str(tmp_path_factory.mktemp("noetl-data")))


class Peer:
    def __init__(self) -> None:
        self.answers: dict[str, deque[tuple[int, Any, dict[str, str]]]] = defaultdict(deque)
        self.defaults: dict[str, tuple[int, Any, dict[str, str]]] = {}
        self.received: list[tuple[str, str, dict[str, str], Any]] = []
        self.slow: dict[str, float] = {}  # route -> seconds to wait before answering
        self.server: TestServer | None = None

    def answer(self, route: str, status: int, body: Any = None, headers: dict[str, str] | None = None,
               *, times: int = 1) -> None:
        for _ in range(times):
            self.answers[route].append((status, body, headers or {}))

    def default(self, route: str, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        self.defaults[route] = (status, body, headers or {})

    def hits(self, route: str) -> list[tuple[str, str, dict[str, str], Any]]:
        return [r for r in self.received if r[0] == route]

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else request.path
        raw = await request.read()
        body = msgspec.json.decode(raw) if raw else None
        self.received.append((route, request.path_qs, dict(request.headers), body))
        if route in self.slow:
            await asyncio.sleep(self.slow[route])
        queue = self.answers.get(route)
        status, answer, headers = queue.popleft() if queue else self.defaults.get(route, (500, {"error": "unscripted"}, {}))
        if isinstance(answer, (bytes, str)):
            return web.Response(status=status, body=answer, headers=headers)
        return web.json_response(answer, status=status, headers=headers)


ROUTES = [
    ("POST", "/api/commands/{event_id}/claim"),
    ("GET", "/api/commands/{event_id}"),
    ("POST", "/api/events/batch"),
    ("POST", "/api/events"),
    ("GET", "/api/credentials/{name}"),
    ("POST", "/api/worker/pool/register"),
    ("POST", "/api/worker/pool/heartbeat"),
    ("POST", "/api/worker/pool/deregister"),
    ("POST", "/api/execute"),
    ("GET", "/api/executions/{execution_id}/cancellation-check"),
    ("GET", "/api/executions/{execution_id}/status"),
]


@pytest_asyncio.fixture
async def peer() -> AsyncIterator[Peer]:
    p = Peer()
    app = web.Application()
    for method, path in ROUTES:
        app.router.add_route(method, path, p.handle)
    async with TestServer(app) as server:
        p.server = server
        yield p


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        yield s
