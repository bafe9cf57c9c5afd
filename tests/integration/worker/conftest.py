"""Worker integration fixtures: a scratch database on the suite's Postgres, and a local stand-in
for the control plane's credential route (the real shard replaces it in the end-to-end tests)."""

from __future__ import annotations

import uuid
from typing import Any, AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from noetl_devstack.postgres import drop_databases, ensure_databases
from noetl_worker.client import Backoff, ControlPlane


@pytest.fixture(autouse=True)
def duckdb_data_dir(tmp_path_factory, monkeypatch):
    """The duckdb tool keeps one database file per execution id under NOETL_DATA_DIR: tests reuse
    small ids, so each test gets a directory of its own."""
    monkeypatch.setenv("NOETL_DATA_DIR", str(tmp_path_factory.mktemp("noetl-data")))


@pytest_asyncio.fixture
async def scratch_dsn(pg_admin_dsn: str) -> AsyncIterator[str]:
    name = f"t_worker_{uuid.uuid4().hex[:10]}"
    dsns = await ensure_databases(pg_admin_dsn, [name])
    yield dsns[name]
    await drop_databases(pg_admin_dsn, [name])


def credential_data(dsn: str) -> dict[str, Any]:
    """A DSN as the `data` of a postgres credential (the shape /api/credentials returns)."""
    parts = urlsplit(dsn)
    return {"db_host": parts.hostname, "db_port": parts.port or 5432, "db_user": parts.username,
            "db_password": parts.password or "", "db_name": parts.path.lstrip("/")}


class CredentialStore:
    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []

    async def get(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.requests.append(request.path_qs)
        if name not in self.items:
            return web.json_response({"detail": f"credential not found: {name}"}, status=404)
        data = self.items[name] if request.query.get("include_data") == "true" else None
        return web.json_response({"name": name, "type": "postgres", "data": data})


@pytest_asyncio.fixture
async def credentials() -> AsyncIterator[tuple[CredentialStore, ControlPlane]]:
    store = CredentialStore()
    app = web.Application()
    app.router.add_get("/api/credentials/{name}", store.get)
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        yield store, ControlPlane(str(server.make_url("")), session, backoff=Backoff(attempts=2, first=0.01))


OUTCOME_TYPES = ("call.done", "call.error")


class StandIn:
    """The control plane's worker routes, scripted: claims are granted unless told otherwise,
    events are accepted unless told otherwise; everything is logged in arrival order. Like the
    new shard, it can start commands at claim (`started_on_claim`) and hand over next commands
    in an outcome answer when the batch asks (`handover`); an Idempotency-Key seen before gets
    the first answer back."""

    def __init__(self) -> None:
        self.commands: dict[int, dict[str, Any]] = {}
        self.claim_answers: dict[int, list[tuple[int, Any, dict[str, str]]]] = {}
        self.batch_failures: dict[str, int] = {}          # event type -> how many batches to refuse (503)
        self.outcome_failures: dict[int, int] = {}        # command id -> outcome batches to refuse (503)
        self.lost_answers: dict[int, int] = {}            # command id -> outcome batches taken, answered 503
        self.hold: dict[str, Any] = {}                     # event type -> asyncio.Event to wait for
        self.started_on_claim = False
        self.handover: dict[int, list[int]] = {}          # command id -> commands its outcome answer hands over
        self.answers: dict[str, dict[str, Any]] = {}      # idempotency key -> the answer given
        self.bodies: list[dict[str, Any]] = []            # every batch taken, as posted
        self.log: list[tuple[str, Any]] = []
        self.keys: list[str] = []
        self.pool_calls: list[tuple[str, dict[str, Any]]] = []

    def claims(self, event_id: int) -> int:
        return sum(1 for kind, what in self.log if kind == "claim" and what == event_id)

    def events(self, command_id: int | None = None) -> list[str]:
        return [what[0] for kind, what in self.log
                if kind == "event" and (command_id is None or what[1] == str(command_id))]

    def payloads(self, event_type: str) -> list[dict[str, Any]]:
        return [what[2] for kind, what in self.log if kind == "event" and what[0] == event_type]

    def outcome_bodies(self, command_id: int) -> list[dict[str, Any]]:
        return [b for b in self.bodies if b["events"][0]["event_type"] in OUTCOME_TYPES
                and b["events"][0]["command_id"] == str(command_id)]

    def command_json(self, event_id: int, worker_id: str, *, started: bool) -> dict[str, Any]:
        spec = self.commands[event_id]
        answer = {"status": "ok", "event_id": event_id, "command_id": str(event_id),
                  "execution_id": spec["execution_id"], "node_id": spec["step"], "node_name": spec["step"],
                  "action": spec["action"], "attempt": 1, "context": spec["context"],
                  "meta": {"worker_id": worker_id}}
        return {**answer, "started": True} if started else answer

    async def claim(self, request: web.Request) -> web.Response:
        event_id = int(request.match_info["event_id"])
        body = await request.json()
        self.log.append(("claim", event_id))
        script = self.claim_answers.get(event_id)
        if script:
            status, answer, headers = script.pop(0)
            return web.json_response(answer, status=status, headers=headers)
        if event_id not in self.commands:
            return web.json_response({"detail": f"command not found: {event_id}"}, status=404)
        return web.json_response(self.command_json(event_id, body["worker_id"], started=self.started_on_claim))

    async def batch(self, request: web.Request) -> web.Response:
        body = await request.json()
        key = request.headers.get("Idempotency-Key", "")
        first = body["events"][0]["event_type"]
        command_id = int(body["events"][0].get("command_id") or 0)
        if key in self.answers:
            self.log.append(("replay", command_id))
            return web.json_response({**self.answers[key], "duplicate": True}, status=202)
        if self.batch_failures.get(first, 0) > 0 or (
                first in OUTCOME_TYPES and self.outcome_failures.get(command_id, 0) > 0):
            if self.batch_failures.get(first, 0) > 0:
                self.batch_failures[first] -= 1
            else:
                self.outcome_failures[command_id] -= 1
            self.log.append(("refused", first))
            return web.json_response({"code": "queue_unavailable"}, status=503)
        if first in self.hold:
            await self.hold[first].wait()
        self.keys.append(key)
        self.bodies.append(body)
        for e in body["events"]:
            self.log.append(("event", (e["event_type"], e.get("command_id"), e["payload"])))
        answer: dict[str, Any] = {"status": "accepted", "request_id": "1", "event_ids": [], "duplicate": False,
                                  "commands_generated": 0}
        if first in OUTCOME_TYPES and body.get("eager"):
            handed = self.handover.pop(command_id, [])
            answer["commands"] = [self.command_json(c, body["worker_id"], started=True) for c in handed]
            self.log.extend(("handed", c) for c in handed)
        if key:
            self.answers[key] = answer
        if self.lost_answers.get(command_id, 0) > 0 and first in OUTCOME_TYPES:
            self.lost_answers[command_id] -= 1
            self.log.append(("lost", command_id))
            return web.json_response({"code": "ack_timeout"}, status=503)  # taken, but the answer is lost
        return web.json_response(answer, status=202)

    async def pool(self, request: web.Request) -> web.Response:
        self.pool_calls.append((request.match_info["action"], await request.json()))
        return web.json_response({"status": "ok", "name": "w", "runtime_id": "1"})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/commands/{event_id}/claim", self.claim)
        app.router.add_post("/api/events/batch", self.batch)
        app.router.add_post("/api/worker/pool/{action}", self.pool)
        return app


@pytest_asyncio.fixture
async def stand_in() -> AsyncIterator[tuple[StandIn, TestServer]]:
    plane = StandIn()
    async with TestServer(plane.app(), host="127.0.0.1") as server:
        yield plane, server
