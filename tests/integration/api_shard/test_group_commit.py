"""Optimistic writes on a real shard database: one statement that writes only when its
expectations hold, and groups of them that succeed or fail exactly as each would alone."""

from __future__ import annotations

import asyncio
import base64
import contextlib

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from noetl_api_shard.app import create_app
from noetl_api_shard.execution.write.group_commit import GroupCommit, Write, send_group
from noetl_api_shard.state import SERVICES
from noetl_api_shard.store import writes
from noetl_api_shard.store.events import NewEvent
from noetl_api_shard.store.writes import Expect, ExecutionWrite, WriteSet

from .conftest import make_settings

PLAYBOOK = b"""
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: one, path: tests/one_step}
workflow:
  - step: start
    tool: {kind: python, code: "result = 1"}
"""


@pytest.fixture
async def shard(database_factory):
    settings = msgspec.structs.replace(make_settings(await database_factory()), reaper_interval_seconds=3600)
    async with TestClient(TestServer(create_app(settings))) as c:
        r = await c.post("/api/catalog/register", json={"content": base64.b64encode(PLAYBOOK).decode()})
        assert r.status == 200
        yield c


async def _executions(client, n: int) -> list[int]:
    ids = []
    for _ in range(n):
        r = await client.post("/api/execute", json={"path": "tests/one_step"})
        ids.append(int((await r.json())["execution_id"]))
    return ids


def _touch(execution_id: int, event_id: int, *, version: int | None = None, key: str | None = None
           ) -> tuple[WriteSet, Expect]:
    """An event plus the execution's last event; with `version`, a state write computed at it."""
    row = ExecutionWrite(execution_id=execution_id, last_event_id=event_id, last_event_type="test.touch")
    if version is not None:
        row.state, row.state_version = b"\x80", version + 1
    events = [NewEvent(event_id=event_id, execution_id=execution_id, event_type="test.touch")]
    if key:
        events.append(NewEvent(event_id=event_id + 1, execution_id=execution_id, event_type="batch.accepted",
                               meta={"idempotency_key": key}))
    return WriteSet(executions=[row], events=events), Expect(executions=1, batch_keys=[(execution_id, key)] if key else [])


async def _logged(pool, event_ids: list[int]) -> set[int]:
    return {r["event_id"] for r in await pool.fetch(
        "SELECT event_id FROM noetl.event WHERE event_id = ANY($1::bigint[])", event_ids)}


async def test_a_stale_version_or_a_known_key_writes_nothing(shard):
    pool = shard.server.app[SERVICES].shard_pool
    (xid,) = await _executions(shard, 1)
    version = await pool.fetchval("SELECT state_version FROM noetl.execution WHERE execution_id = $1", xid)
    async with pool.acquire() as conn:
        with pytest.raises(writes.Conflict):
            await writes.flush(conn, *_touch(xid, 900_001, version=version - 1))
        await writes.flush(conn, *_touch(xid, 900_002, version=version, key="k1"))
        with pytest.raises(writes.KnownBatch):
            await writes.flush(conn, *_touch(xid, 900_004, key="k1"))
    assert await _logged(pool, [900_001, 900_002, 900_003, 900_004]) == {900_002, 900_003}
    assert await pool.fetchval("SELECT state_version FROM noetl.execution WHERE execution_id = $1", xid) == version + 1


async def test_a_group_succeeds_or_fails_write_by_write_as_each_would_alone(shard):
    pool = shard.server.app[SERVICES].shard_pool
    a, b, c = await _executions(shard, 3)
    version_b = await pool.fetchval("SELECT state_version FROM noetl.execution WHERE execution_id = $1", b)
    good = Write(*_touch(a, 910_001))
    stale = Write(*_touch(b, 910_011, version=version_b - 1))  # another writer got there first
    also_good = Write(*_touch(c, 910_021))
    await send_group(pool, [good, stale, also_good])
    assert good.done.result() is None and also_good.done.result() is None
    assert isinstance(stale.done.exception(), writes.Conflict)
    assert await _logged(pool, [910_001, 910_011, 910_021]) == {910_001, 910_021}

    together = [Write(*_touch(x, 920_000 + i * 10)) for i, x in enumerate((a, b, c))]
    await send_group(pool, together)
    assert all(w.done.result() is None for w in together)
    assert await _logged(pool, [920_000, 920_010, 920_020]) == {920_000, 920_010, 920_020}


async def test_writes_held_together_go_in_one_statement(shard):
    """Concurrent writes go out as they come (two statements may be in flight), the rest together;
    held, they wait until left and then go in one statement: one transaction id for all their rows."""
    app = shard.server.app
    group, pool = GroupCommit(), app[SERVICES].write_pool
    ids = await _executions(shard, 6)

    async def transactions(base: int, held: bool) -> int:
        writes_ = [_touch(x, base + i * 10) for i, x in enumerate(ids)]
        with group.held(pool) if held else contextlib.nullcontext():
            tasks = [asyncio.ensure_future(group.flush(pool, ws, expect)) for ws, expect in writes_]
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        return await pool.fetchval("SELECT count(DISTINCT xmin::text) FROM noetl.event WHERE event_id = ANY($1::bigint[])",
                                   [base + i * 10 for i in range(len(ids))])

    assert await transactions(930_000, held=False) > 1
    assert await transactions(940_000, held=True) == 1


async def test_transactions_are_planned_once_and_go_by_index(shard):
    """The orchestrator's statements run on the write pool: each prepared statement gets one
    generic plan instead of being re-planned per call (planning the write CTE costs as much as
    running it), and no plan scans a whole table (a plan made while a fresh table was nearly
    empty would scan it on every step). Counted from each connection's own prepared statements."""
    svc = shard.server.app[SERVICES]
    await _executions(shard, 12)  # more than Postgres's five custom plans before it may go generic
    generic = custom = 0
    pool = svc.write_pool
    held = [await pool.acquire() for _ in range(pool.get_size())]
    try:
        for conn in held:
            assert await conn.fetchval("SHOW enable_seqscan") == "off"
            for row in await conn.fetch("SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                                        "WHERE statement LIKE 'WITH%'"):
                generic += row["generic_plans"]
                custom += row["custom_plans"]
    finally:
        for conn in held:
            await pool.release(conn)
    assert generic >= 12 and custom == 0, (generic, custom)
