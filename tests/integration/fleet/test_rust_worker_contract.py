"""The test plays a NoETL Rust worker (sharding_deploy.md §6, noetl_contract.md §1.3, §3.2, §8)
against a live fleet — 3 shards, router, outbox publisher, projector, no reference worker — and
speaks only the Rust worker's shapes, through the router, without any of this fleet's extensions:

register its pool with `runtime: {kind: "rust", worker_public_key}`; pull notifications from
`noetl.commands.shared.>` with the shared pool's durable consumer; claim each command; post
`command.started`, `call.done` `{command_id, call_index, result}` and `command.completed`
`{command_id, status}` one `POST /api/events` at a time; PUT an over-budget result to the result
store and reference it (`result.reference`, `context.data._ref`); heartbeat; deregister. The
playbook's later steps template over the stored result, so it completes with the right result
only if the control plane resolved the reference for the engine."""

from __future__ import annotations

import base64
import tempfile
import time
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import msgspec
import nats
import pytest
import pytest_asyncio
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from noetl_common.ids import Snowflake
from noetl_devstack import secrets
from noetl_devstack.fleet import FleetConfig, fleet_specs, router_url, start_fleet
from noetl_devstack.infra import Infra
from noetl_devstack.local_fleet import discard_state
from noetl_devstack.processes import Supervisor

pytestmark = pytest.mark.integration

SHARDS = 3
WORKER_ID = "rust-worker-contract"
POOL = "shared"
DURABLE = f"noetl_worker_pool_{POOL}"      # the shared pool's durable (contract §8)
STREAM = "NOETL_COMMANDS"
INLINE_CONTEXT_MAX_BYTES = 100 * 1024      # the Rust worker's inline budget
ROWS = 1500

PLAYBOOK = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: rust_contract, path: tests/rust_contract}
workflow:
  - step: start
    tool: {kind: python, code: "result = {'rows': [{'i': i, 'text': 'x' * 100} for i in range(1500)]}"}
    next: [{step: summarize}]
  - step: summarize
    tool: {kind: python, input: {count: "{{ start.rows | length }}", last: "{{ start.rows[-1].i }}"},
           code: "result = {'count': count, 'last': last}"}
    next: [{step: end}]
  - step: end
    tool: {kind: python, input: {total: "{{ summarize.count }}", last: "{{ summarize.last }}"},
           code: "result = {'total': total, 'last': last}"}
"""


class Fleet(msgspec.Struct):
    router: str
    nats_url: str


@pytest_asyncio.fixture(scope="module")
async def rust_fleet() -> AsyncIterator[Fleet]:
    """The fleet `make run` starts, minus its reference workers: the test is the only worker."""
    work = Path(tempfile.mkdtemp(prefix="noetl-rust-contract-"))
    infra = Infra(work)
    supervisor = Supervisor(work / "logs")
    try:
        info = await infra.up(SHARDS)
        specs = fleet_specs(FleetConfig(cluster_dsn=info.cluster_dsn(), shard_dsns=info.shard_dsns(SHARDS),
                                        nats_url=info.nats_url, secrets=secrets.load_or_create(work / "s.json"),
                                        workers=0))
        await start_fleet(supervisor, specs)
        yield Fleet(router=router_url(specs), nats_url=info.nats_url)
    finally:
        supervisor.stop_all()
        infra.down()
        discard_state(work)


class RustWorker:
    """Only what the Rust worker sends and reads (§6); every call goes through the router."""

    def __init__(self, http: aiohttp.ClientSession, router: str) -> None:
        self.http, self.router = http, router
        self.ids = Snowflake(7)   # the worker stamps its events with its own snowflakes
        self.claimed: list[dict[str, Any]] = []

    async def call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200,)) -> Any:
        async with self.http.request(method, self.router + path, json=body) as r:
            answer = await r.json(content_type=None)
            assert r.status in ok, (method, path, r.status, answer)
            return answer

    async def register(self) -> None:
        await self.call("POST", "/api/worker/pool/register", {
            "name": WORKER_ID, "component_type": "worker_pool", "status": "ready", "hostname": "rust-host",
            "runtime": {"kind": "rust", "worker_public_key": base64.b64encode(b"k" * 32).decode()},
            "labels": {"pool_name": POOL}})

    async def heartbeat(self) -> None:
        await self.call("POST", "/api/worker/pool/heartbeat", {"name": WORKER_ID})

    async def deregister(self) -> None:
        await self.call("POST", "/api/worker/pool/deregister", {"name": WORKER_ID, "component_type": "worker_pool"})

    async def emit(self, execution_id: int, event_type: str, step: str, status: str, context: dict) -> None:
        await self.call("POST", "/api/events", {
            "execution_id": execution_id, "event_type": event_type, "step": step, "status": status,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "context": context,
            "event_id": self.ids.next_id(), "worker_id": WORKER_ID, "meta": {"attempts": 1}})

    async def handle(self, note: dict[str, Any], msg: Any) -> None:
        """One notification: claim, ack (the claim is the exactly-once gate), run, report."""
        command = await self.call("POST", f"/api/commands/{note['event_id']}/claim", {"worker_id": WORKER_ID})
        await msg.ack()
        self.claimed.append(command)
        execution_id, step = int(command["execution_id"]), command["node_name"]
        command_id = str(command["meta"]["command_id"])
        await self.emit(execution_id, "command.started", step, "STARTED", {"command_id": command_id})
        output = run_tool(step, command["context"].get("args") or {})
        result = await self.call_done_result(execution_id, step, output)
        await self.emit(execution_id, "call.done", step, "COMPLETED",
                        {"command_id": command_id, "call_index": 0, "result": result})
        await self.emit(execution_id, "command.completed", step, "success",
                        {"command_id": command_id, "status": "success"})

    async def call_done_result(self, execution_id: int, step: str, context: Any) -> dict[str, Any]:
        """The Rust worker's `build_call_done_result`: inline under budget, else PUT + reference."""
        if len(msgspec.json.encode(context)) <= INLINE_CONTEXT_MAX_BYTES:
            return {"status": "success", "context": context}
        put = await self.call("PUT", f"/api/result/{execution_id}",
                              {"name": step, "data": context, "scope": "execution", "source_step": step})
        reference = {"kind": "result_ref", "ref": put["ref"], "store": put["store"], "scope": put["scope"],
                     "meta": {"bytes": put["bytes"], "sha256": put["sha256"], "media_type": "application/json",
                              "content_type": "application/json"},
                     "extracted": {"rows": {"len": len(context.get("rows", []))}}}
        return {"status": "success", "context": {"data": {"_ref": put["ref"]}}, "reference": reference}


def run_tool(step: str, args: dict[str, Any]) -> Any:
    """What the three python steps compute (the test is the worker; it runs them by hand)."""
    if step == "start":
        return {"rows": [{"i": i, "text": "x" * 100} for i in range(ROWS)]}
    if step == "summarize":
        return {"count": args["count"], "last": args["last"]}
    if step == "end":
        return {"total": args["total"], "last": args["last"]}
    raise AssertionError(f"unexpected step {step!r}")


async def test_a_rust_worker_runs_a_playbook_through_the_router(rust_fleet):
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        worker = RustWorker(http, rust_fleet.router)
        await worker.register()
        pools = await worker.call("GET", "/api/worker/pools?runtime=rust")
        assert [(p["name"], p["status"]) for p in pools["items"]] == [(WORKER_ID, "ready")]
        await worker.call("POST", "/api/catalog/register", {"content": base64.b64encode(PLAYBOOK.encode()).decode()})
        started = await worker.call("POST", "/api/execute", {"path": "tests/rust_contract", "payload": {}})
        execution_id = int(started["execution_id"])

        nc = await nats.connect(rust_fleet.nats_url)
        try:
            js = nc.jetstream()
            sub = await js.pull_subscribe(f"noetl.commands.{POOL}.>", durable=DURABLE, stream=STREAM,
                                          config=ConsumerConfig(durable_name=DURABLE, ack_policy=AckPolicy.EXPLICIT,
                                                                deliver_policy=DeliverPolicy.ALL))
            notes = await _work(worker, sub, http, execution_id)
        finally:
            await nc.close()

        status = await worker.call("GET", f"/api/executions/{execution_id}/status")
        assert status["status"] == "COMPLETED", status
        assert status["result"] == {"total": ROWS, "last": ROWS - 1}
        # Every notification named the shared pool and the owning shard's URL, as NoETL's do.
        assert [n["step"] for n in notes] == ["start", "summarize", "end"]
        assert {n["execution_pool"] for n in notes} == {POOL}
        assert all(int(n["execution_id"]) == execution_id and n["server_url"] for n in notes)
        # The rendered args the worker got show the engine read the stored result.
        assert worker.claimed[1]["context"]["args"] == {"count": ROWS, "last": ROWS - 1}

        # The log holds the reference, not the rows; the store gives the rows back.
        events = await worker.call("GET", f"/api/executions/{execution_id}/events?event_type=call.done")
        first = events["events"][-1]  # the oldest: newest first
        assert first["node_name"] == "start" and "x" * 100 not in msgspec.json.encode(first).decode()
        ref = first["result"]["reference"]["ref"]
        stored = await worker.call("GET", f"/api/result/resolve?ref={ref}")
        assert len(stored["rows"]) == ROWS and stored["rows"][-1]["i"] == ROWS - 1
        replay = await worker.call("GET", f"/api/replay/state?execution_id={execution_id}")
        assert replay["matches"], replay

        await worker.deregister()
        pools = await worker.call("GET", "/api/worker/pools?runtime=rust")
        assert [(p["name"], p["status"]) for p in pools["items"]] == [(WORKER_ID, "offline")]


async def _work(worker: RustWorker, sub: Any, http: aiohttp.ClientSession, execution_id: int) -> list[dict]:
    """Pull, claim, ack, run, report until the execution ends; heartbeat every few seconds."""
    notes: list[dict] = []
    deadline = time.monotonic() + 90
    last_beat = 0.0
    while time.monotonic() < deadline:
        if time.monotonic() - last_beat > 2:
            await worker.heartbeat()
            last_beat = time.monotonic()
        try:
            messages = await sub.fetch(1, timeout=2)
        except nats.errors.TimeoutError:
            messages = []
        for msg in messages:
            note = msgspec.json.decode(msg.data)
            if note.get("execution_pool") not in (None, POOL):
                await msg.nak()  # the Rust worker declines another pool's commands
                continue
            notes.append(note)
            await worker.handle(note, msg)
        async with http.get(f"{worker.router}/api/executions/{execution_id}/status") as r:
            if (await r.json())["completed"]:
                return notes
    raise AssertionError(f"execution {execution_id} did not finish; notifications: {notes}")
