"""Outbox publisher end to end: a real shard (in-process, real Postgres) -> the publisher ->
real NATS JetStream. Nothing lost, nothing doubled, across a publisher crash and a NATS outage."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid

import nats
import pytest
from aiohttp.test_utils import TestServer

from noetl_api_shard.app import create_app
from noetl_api_shard.execution.keys import ORCHESTRATOR
from noetl_api_shard.store import outbox as store
from noetl_api_shard.store.outbox import OutboxRow
from noetl_common.db import create_pool
from noetl_devstack.nats import EmbeddedNats, stop_pid
from noetl_devstack.ports import free_port
from noetl_common.streams import ensure_streams

from ..api_shard.conftest import INTERNAL_TOKEN, Databases, make_settings


@pytest.fixture
async def shard(fresh_databases, infra):
    dbs = await fresh_databases(1)
    settings = make_settings(Databases(infra.admin_dsn, dbs.shard_dsns[0], dbs.cluster_dsn, "", ""))
    server = TestServer(create_app(settings), host="127.0.0.1", port=free_port())
    await server.start_server()
    pool = await create_pool(dbs.shard_dsns[0], 1, 3)
    yield server, pool
    await pool.close()
    await server.close()


async def enqueue(server, ids, execution_id):
    """Through the shard's own write path (one transaction; its commit wakes the long-polling claim)."""
    async with server.app[ORCHESTRATOR].transaction() as txn:
        for i in ids:
            txn.uow.notify(OutboxRow(id=i, execution_id=execution_id, event_id=i,
                                     subject=f"noetl.commands.shared.{execution_id}", payload={"event_id": i}))


def start_publisher(shard_url: str, nats_url: str) -> subprocess.Popen:
    env = {**os.environ, "NOETL_SHARD_URLS": shard_url, "NOETL_INTERNAL_API_TOKEN": INTERNAL_TOKEN,
           "NOETL_NATS_URL": nats_url, "NOETL_HTTP_HOST": "127.0.0.1", "NOETL_HTTP_PORT": str(free_port()),
           "NOETL_OUTBOX_WAIT_MS": "500"}
    return subprocess.Popen([sys.executable, "-m", "noetl_outbox_publisher"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def collect(nats_url: str, execution_id: int, want: int, timeout: float = 20) -> list[int]:
    """Every message JetStream holds for this execution (duplicates included, if any got through)."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js)
    sub = await js.pull_subscribe(f"noetl.commands.shared.{execution_id}", durable=f"t{uuid.uuid4().hex[:8]}",
                                  stream="NOETL_COMMANDS")
    seen: list[int] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while len(seen) < want and asyncio.get_running_loop().time() < deadline:
        try:
            for msg in await sub.fetch(50, timeout=1):
                seen.append(int(msg.headers["Nats-Msg-Id"]))
                await msg.ack()
        # nats.errors.TimeoutError, or asyncio's own when fetch's deadline is spent before its
        # second request (a loaded machine): both are TimeoutError.
        except TimeoutError:
            pass
    try:  # anything beyond `want` would be a duplicate
        for msg in await sub.fetch(50, timeout=1):
            seen.append(int(msg.headers["Nats-Msg-Id"]))
    except TimeoutError:  # as above
        pass
    await nc.close()
    return seen


async def wait_published(pool, timeout: float = 20) -> None:
    """Published rows are deleted: wait until the outbox is empty."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await pool.fetchval("SELECT count(*) FROM noetl.outbox") == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("outbox rows were not all published")


async def test_publishes_marks_and_never_doubles_after_a_crash(shard, nats_url):
    server, pool = shard
    url = str(server.make_url("")).rstrip("/")
    execution_id = 7001
    await enqueue(server, [1, 2, 3], execution_id)
    # A publisher that died after publishing message 1 but before reporting it: JetStream already
    # has it, and the row is still in the outbox.
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js)
    await js.publish(f"noetl.commands.shared.{execution_id}", b"{}", headers={"Nats-Msg-Id": "1"})
    await nc.close()
    assert [m.id for m in await store.claim(pool, limit=1)] == [1]

    proc = start_publisher(url, nats_url)
    try:
        await enqueue(server, [4, 5], execution_id)
        await wait_published(pool)
        seen = await collect(nats_url, execution_id, 5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert sorted(seen) == [1, 2, 3, 4, 5]  # exactly once each
    assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]


async def test_sigkill_mid_run_then_a_new_publisher_finishes(shard, nats_url):
    server, pool = shard
    url = str(server.make_url("")).rstrip("/")
    execution_id = 7002
    first = start_publisher(url, nats_url)
    await enqueue(server, list(range(100, 140)), execution_id)
    await asyncio.sleep(0.3)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    await enqueue(server, list(range(140, 160)), execution_id)
    second = start_publisher(url, nats_url)
    try:
        await wait_published(pool, timeout=30)
        seen = await collect(nats_url, execution_id, 60)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=20)
    assert sorted(seen) == list(range(100, 160))


async def test_nats_outage_loses_nothing(shard, tmp_path):
    server, pool = shard
    url = str(server.make_url("")).rstrip("/")
    port = free_port()
    own = EmbeddedNats(tmp_path / "nats")
    nats_url, pid = own.start(port)
    execution_id = 7003
    proc = start_publisher(url, nats_url)
    try:
        await enqueue(server, [1, 2], execution_id)
        await wait_published(pool)
        stop_pid(pid)
        await enqueue(server, [3, 4, 5], execution_id)  # written while NATS is down
        await asyncio.sleep(1.5)
        assert sorted(r["id"] for r in await pool.fetch("SELECT id FROM noetl.outbox")) == [3, 4, 5]
        _, pid = EmbeddedNats(tmp_path / "nats").start(port)  # same store dir: the stream survives
        await wait_published(pool, timeout=40)
        seen = await collect(nats_url, execution_id, 5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        stop_pid(pid)
    assert sorted(seen) == [1, 2, 3, 4, 5]


def test_missing_configuration_is_named():
    res = subprocess.run([sys.executable, "-m", "noetl_outbox_publisher"], capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if not k.startswith("NOETL_")}, timeout=30)
    assert res.returncode == 2 and "NOETL_SHARD_URLS" in res.stderr
