"""The projector against real NATS JetStream and a real api-shard: nothing is acked while the
shard cannot take the events (they wait, in order), everything is folded once it can, and an
event the shard refuses is dropped alone without holding up the rest."""

from __future__ import annotations

import asyncio
import base64
import inspect

import aiohttp
import asyncpg
import msgspec
import nats
import pytest_asyncio
from aiohttp import web
from prometheus_client import CollectorRegistry

from noetl_api_shard.app import create_app
from noetl_common.config import HttpSettings, ShardSettings
from noetl_common.streams import EVENTS_STREAM, ensure_streams
from noetl_devstack.nats import EmbeddedNats, stop_pid
from noetl_devstack.ports import free_port
from noetl_projector.consumer import ProjectorMetrics, ShardProjector, durable_name

TOKEN = "projector-test-token"
XID = 385_000_000_000_000_001


@pytest_asyncio.fixture
async def js_and_dbs(fresh_databases, tmp_path):
    dbs = await fresh_databases(1)
    port = free_port()
    url, pid = EmbeddedNats(tmp_path / "nats").start(port)
    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_streams(js, (EVENTS_STREAM,))
    try:
        yield js, dbs
    finally:
        await nc.close()
        stop_pid(pid)


def envelope(event_id: int, event_type: str, **extra) -> dict:
    return {"event_id": str(event_id), "execution_id": str(XID), "event_type": event_type,
            "node_name": extra.pop("node_name", None), "event_time_ms": 1_790_000_000_000 + event_id % 1000,
            **extra}


async def publish(js, events: list[dict]) -> None:
    for e in events:
        await js.publish(f"noetl.events.0.{e['execution_id']}", msgspec.json.encode(e))


async def start_shard(dbs, port: int) -> web.AppRunner:
    settings = ShardSettings(shard_index=0, shard_count=1, shard_dsn=dbs.shard_dsns[0], cluster_dsn=dbs.cluster_dsn,
                             encryption_key=base64.b64encode(bytes(32)).decode(), internal_token=TOKEN,
                             http=HttpSettings("127.0.0.1", port, 1 << 20), node_id=0, pool_min=1, pool_max=4,
                             log_level="INFO")
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def summary(dsn: str) -> asyncpg.Record | None:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchrow("SELECT * FROM noetl.execution_summary WHERE execution_id = $1", XID)
    finally:
        await conn.close()


async def eventually(check, timeout: float = 15.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := await _resolve(check())):
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)
    return result


async def test_waits_for_the_shard_then_projects_everything_once(js_and_dbs):
    js, dbs = js_and_dbs
    port = free_port()
    registry = CollectorRegistry()
    metrics = ProjectorMetrics(registry)
    await publish(js, [envelope(XID + 1, "playbook.initialized", node_name="tests/p"),
                       envelope(XID + 2, "call.done", node_name="start", command_id=str(XID + 10)),
                       envelope(XID + 3, "playbook.completed", node_name="tests/p")])
    async with aiohttp.ClientSession() as session:
        projector = ShardProjector(shard=0, base_url=f"http://127.0.0.1:{port}", token=TOKEN, batch=50,
                                   ack_wait_seconds=30, js=js, session=session, metrics=metrics)
        task = asyncio.create_task(projector.run())
        runner = None
        try:
            # The shard is down: the batch is delivered, retried, and not acked.
            await eventually(lambda: _value(registry, "noetl_projector_request_failures_total") >= 2)
            info = await js.consumer_info(EVENTS_STREAM, durable_name(0))
            assert info.num_ack_pending == 3 and info.num_redelivered == 0
            runner = await start_shard(dbs, port)
            row = await eventually(lambda: _completed(dbs.shard_dsns[0]))
            assert row["path"] == "tests/p" and row["event_count"] == 3
            info = await eventually(lambda: _drained(js))
            assert _value(registry, "noetl_projector_events_total") == 3

            # A refused event (not an id) is dropped alone; the good one beside it is folded.
            await publish(js, [{**envelope(XID + 4, "command.heartbeat"), "execution_id": "not-an-id"},
                               envelope(XID + 5, "command.completed", command_id=str(XID + 10))])
            await eventually(lambda: _count(dbs.shard_dsns[0], 4))
            await eventually(lambda: _drained(js))
            assert _value(registry, "noetl_projector_rejected_total") == 1
            await projector.refresh_lag()
            assert _value(registry, "noetl_projector_lag_events") == 0
        finally:
            projector.stop()
            await asyncio.wait_for(task, 10)
            if runner is not None:
                await runner.cleanup()


async def _resolve(value):
    return await value if inspect.isawaitable(value) else value


async def _completed(dsn: str):
    row = await summary(dsn)
    return row if row is not None and row["status"] == "COMPLETED" else None


async def _count(dsn: str, n: int) -> bool:
    row = await summary(dsn)
    return row is not None and row["event_count"] == n


async def _drained(js) -> bool:
    info = await js.consumer_info(EVENTS_STREAM, durable_name(0))
    return info.num_pending == 0 and info.num_ack_pending == 0


def _value(registry: CollectorRegistry, name: str) -> float:
    return sum(s.value for m in registry.collect() for s in m.samples
               if s.name in (name, name + "_total") and not s.name.endswith("_created"))


async def test_a_wrong_token_waits_instead_of_dropping(js_and_dbs):
    js, dbs = js_and_dbs
    port = free_port()
    runner = await start_shard(dbs, port)
    registry = CollectorRegistry()
    await publish(js, [envelope(XID + 1, "playbook.initialized", node_name="tests/p")])
    async with aiohttp.ClientSession() as session:
        projector = ShardProjector(shard=0, base_url=f"http://127.0.0.1:{port}", token="not-the-token", batch=50,
                                   ack_wait_seconds=30, js=js, session=session, metrics=ProjectorMetrics(registry))
        task = asyncio.create_task(projector.run())
        try:
            await eventually(lambda: _value(registry, "noetl_projector_request_failures_total") >= 2)
            info = await js.consumer_info(EVENTS_STREAM, durable_name(0))
            assert info.num_ack_pending == 1
            assert _value(registry, "noetl_projector_rejected_total") == 0
            assert await summary(dbs.shard_dsns[0]) is None
        finally:
            projector.stop()
            await asyncio.wait_for(task, 10)
            await runner.cleanup()


XID2 = 385_000_000_000_000_002


async def publish_batch(js, msg_id: str | None, events: list[dict]) -> None:
    """A message as the shard writes it: one transaction's events, named by its outbox id."""
    await js.publish(f"noetl.events.0.{events[0]['execution_id']}", msgspec.json.encode({"events": events}),
                     headers={"Nats-Msg-Id": msg_id} if msg_id else None)


async def _summaries(dsn: str) -> dict[int, tuple[int, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        return {r["execution_id"]: (r["event_count"], r["status"]) for r in await conn.fetch(
            "SELECT execution_id, event_count, status FROM noetl.execution_summary")}
    finally:
        await conn.close()


async def test_batched_messages_and_older_single_events_are_each_projected_once(js_and_dbs):
    js, dbs = js_and_dbs
    port = free_port()
    runner = await start_shard(dbs, port)
    registry = CollectorRegistry()
    def child(event_id, kind):
        return {**envelope(event_id, kind, node_name="tests/c"), "execution_id": str(XID2)}

    # A parent and its child in one transaction, the older one-event format, and two bad messages:
    # one naming no id (no Nats-Msg-Id), one carrying an event the shard refuses.
    await publish_batch(js, "9001", [envelope(XID + 1, "playbook.initialized", node_name="tests/p"),
                                     child(XID + 2, "playbook.initialized")])
    await publish(js, [envelope(XID + 3, "step.enter", node_name="start")])
    await publish_batch(js, None, [envelope(XID + 4, "step.exit", node_name="start")])
    await publish_batch(js, "9002", [envelope(XID + 5, "step.exit", node_name="start"),
                                     {**envelope(XID + 6, "step.enter"), "event_id": "not-an-id"}])
    await publish_batch(js, "9003", [child(XID + 7, "playbook.completed"),
                                     envelope(XID + 8, "playbook.completed", node_name="tests/p")])
    async with aiohttp.ClientSession() as session:
        projector = ShardProjector(shard=0, base_url=f"http://127.0.0.1:{port}", token=TOKEN, batch=50,
                                   ack_wait_seconds=30, js=js, session=session, metrics=ProjectorMetrics(registry))
        await projector.subscribe()
        task = asyncio.create_task(projector.run())
        try:
            await eventually(lambda: _drained(js))
            assert await _summaries(dbs.shard_dsns[0]) == {XID: (3, "COMPLETED"), XID2: (2, "COMPLETED")}
            assert _value(registry, "noetl_projector_events_total") == 5  # events, not messages
            assert _value(registry, "noetl_projector_rejected_total") == 3  # the unnamed one + both refused
        finally:
            projector.stop()
            await asyncio.wait_for(task, 10)
            await runner.cleanup()


async def test_a_trickle_is_gathered_into_one_request(js_and_dbs):
    """After a fetch the projector lingers for more: messages arriving meanwhile share a request."""
    js, _ = js_and_dbs
    requests: list[dict] = []

    async def fake_project(request: web.Request) -> web.Response:
        requests.append(await request.json())
        return web.json_response({"projected": 0, "duplicates": 0})

    app = web.Application()
    app.router.add_post("/api/internal/events/project", fake_project)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    async with aiohttp.ClientSession() as session:
        projector = ShardProjector(shard=0, base_url=f"http://127.0.0.1:{port}", token=TOKEN, batch=3,
                                   ack_wait_seconds=30, js=js, session=session,
                                   metrics=ProjectorMetrics(CollectorRegistry()), linger_seconds=600)
        await projector.subscribe()
        task = asyncio.create_task(projector.run())
        try:
            await publish_batch(js, "9101", [envelope(XID + 1, "step.enter")])
            await eventually(lambda: _in_flight(js, 1))  # fetched, and held while lingering
            await publish_batch(js, "9102", [envelope(XID + 2, "step.enter")])
            await publish(js, [envelope(XID + 3, "step.exit")])
            await eventually(lambda: _drained(js))  # the batch filled up: posted without waiting out the linger
            assert [[m["id"] for m in body["messages"]] for body in requests] == [["9101", "9102", str(XID + 3)]]
        finally:
            projector.stop()
            await asyncio.wait_for(task, 10)
            await runner.cleanup()


async def _in_flight(js, n: int) -> bool:
    info = await js.consumer_info(EVENTS_STREAM, durable_name(0))
    return info.num_pending == 0 and info.num_ack_pending == n
