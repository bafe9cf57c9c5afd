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
