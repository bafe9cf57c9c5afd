"""Partitioned history on real Postgres: slices created ahead, retention removing whole slices
only when every execution in them finished past retention, the archive read back."""

from __future__ import annotations

import asyncio
import json
import re
import time

import asyncpg
import pytest

from noetl_common.db import apply_migrations, create_pool, load_migrations
from noetl_common.ids import compose
from noetl_common import history_archive
from noetl_api_shard.execution.upkeep import retention
from noetl_api_shard.store import partitions, writes

from .conftest import INTERNAL_TOKEN, start_harness, stop_harness

DAY_MS = 86_400_000


async def _shard(database_factory) -> asyncpg.Pool:
    dbs = await database_factory(blank=True)
    pool = await create_pool(dbs.shard_dsn, min_size=1, max_size=4)
    await apply_migrations(pool, "shard")
    await partitions.ensure_ahead(pool, slice_ms=DAY_MS, ahead=2)
    return pool


async def _execution(pool: asyncpg.Pool, execution_id: int, status: str, ended_days_ago: float | None,
                     path: str = "demo/flow", events: int = 3) -> None:
    ended = None if ended_days_ago is None else f"now() - interval '{ended_days_ago} days'"
    await pool.execute(
        f"INSERT INTO noetl.execution (execution_id, catalog_id, path, version, status, state, ended_at) "
        f"VALUES ($1, 1, $2, 1, $3, '\\x0102'::bytea, {ended or 'NULL'})", execution_id, path, status)
    for i in range(events):
        await pool.execute("INSERT INTO noetl.event (execution_id, event_id, event_type, command_id, payload) "
                           "VALUES ($1, $2, 'step.exit', $3, '{\"result\": {\"n\": 1}}')",
                           execution_id, execution_id + 1 + i, execution_id + 100)
    await pool.execute("INSERT INTO noetl.command (command_id, execution_id, step, tool_kind, status) "
                       "VALUES ($1, $2, 'start', 'python', 'COMPLETED')", execution_id + 100, execution_id)
    await pool.execute("INSERT INTO noetl.step_result (execution_id, step, result) VALUES ($1, 'start', '1')",
                       execution_id)


def _later() -> int:
    """A clock past the close of p0 (the slice below the migration, which ends as the test starts)."""
    return int(time.time() * 1000) + 2 * retention.CLOSED_MARGIN_MS


async def _rows(pool: asyncpg.Pool, execution_id: int) -> dict[str, int]:
    return {t: await pool.fetchval(f"SELECT count(*) FROM noetl.{t} WHERE execution_id = $1", execution_id)
            for t in ("execution", "event", "command", "step_result")}


async def test_slices_are_created_ahead_and_rows_route_by_execution_id(database_factory):
    pool = await _shard(database_factory)
    try:
        names = [s.name for s in await partitions.slices(pool)]
        assert names[0] == "p0" and len(names) >= 3  # the pre-partitioning slice, today's, the ones ahead
        for table in partitions.TABLES:  # every table has the same slices
            assert [s.name for s in await partitions.slices(pool, table)] == names
        now_id = compose(int(time.time() * 1000), 0, 1)
        await _execution(pool, now_id, "RUNNING", None)
        where = await pool.fetchval("SELECT tableoid::regclass::text FROM noetl.event WHERE execution_id = $1 LIMIT 1",
                                    now_id)
        assert where.startswith("noetl.event_p2")
        assert await partitions.ensure_ahead(pool, slice_ms=DAY_MS, ahead=2) == []  # idempotent
    finally:
        await pool.close()


async def test_retention_never_removes_a_running_executions_rows(database_factory, tmp_path):
    pool = await _shard(database_factory)
    try:
        old_ms = int(time.time() * 1000) - 100 * DAY_MS  # in p0, the slice below the migration
        running, done, kept_path = (compose(old_ms, 0, i * 1000) for i in (1, 2, 3))
        await _execution(pool, running, "RUNNING", None)
        await _execution(pool, done, "COMPLETED", 90)
        await _execution(pool, kept_path, "FAILED", 90, path="audit/keep")
        young = compose(int(time.time() * 1000), 0, 7)
        await _execution(pool, young, "COMPLETED", 0)
        before = {e: await _rows(pool, e) for e in (running, done, kept_path, young)}
        policy = retention.Policy(days=30, path_days={"audit/keep": 365}, archive_dir=str(tmp_path))

        report = await retention.run(pool, policy, shard_index=0, now_ms=_later())
        assert report.dropped == []
        assert report.kept == [retention.Kept("p0", running=1, retained=1)]
        assert {e: await _rows(pool, e) for e in before} == before

        await pool.execute("UPDATE noetl.execution SET status = 'COMPLETED', ended_at = now() - interval '60 days' "
                           "WHERE execution_id = $1", running)
        report = await retention.run(pool, policy, shard_index=0, now_ms=_later())
        assert report.kept == [retention.Kept("p0", running=0, retained=1)]  # audit/keep keeps it a year

        report = await retention.run(pool, retention.Policy(days=30, archive_dir=str(tmp_path)), shard_index=0,
                                      now_ms=_later())
        assert [d.slice for d in report.dropped] == ["p0"]
        assert report.dropped[0].executions == 3 and report.dropped[0].events == 9
        for e in (running, done, kept_path):
            assert set((await _rows(pool, e)).values()) == {0}
        assert await _rows(pool, young) == before[young]  # a later slice is untouched
        assert "p0" not in [s.name for s in await partitions.slices(pool)]
        assert await partitions.detached(pool) == []

        archived = history_archive.read_execution(tmp_path, done)
        assert archived is not None
        assert {t: len(v) for t, v in archived.items() if t in before[done]} == before[done]
        assert [e["event_id"] for e in archived["event"]] == [done + 1, done + 2, done + 3]
        assert archived["execution"][0]["state"] == "\\x0102"
        assert history_archive.read_execution(tmp_path, young) is None
        status = await retention.status(pool, policy)
        assert status.last_run_dropped == 1
        assert status.oldest_execution_id == str(young)
    finally:
        await pool.close()


@pytest.mark.parametrize("days", [0.0])
async def test_retention_off_removes_nothing(database_factory, days):
    pool = await _shard(database_factory)
    try:
        old = compose(int(time.time() * 1000) - 400 * DAY_MS, 0, 1)
        await _execution(pool, old, "COMPLETED", 399)
        report = await retention.run(pool, retention.Policy(days=days), shard_index=0)
        assert not report.enabled and report.dropped == []
        assert (await _rows(pool, old))["event"] == 3
    finally:
        await pool.close()


async def test_a_shard_with_history_migrates_in_place(database_factory):
    """Data written before 0007 stays where it is (slice p0): same rows, same keys, still written."""
    dbs = await database_factory(blank=True)
    pool = await create_pool(dbs.shard_dsn, min_size=1, max_size=2)
    try:
        await apply_migrations(pool, "shard", [m for m in load_migrations("shard") if m.version < 7])
        old = compose(int(time.time() * 1000) - 5000, 0, 1)
        await _execution(pool, old, "RUNNING", None)
        await apply_migrations(pool, "shard")
        assert await pool.fetchval("SELECT relkind FROM pg_class WHERE oid = 'noetl.event'::regclass") == b"p"
        assert await _rows(pool, old) == {"execution": 1, "event": 3, "command": 1, "step_result": 1}
        where = await pool.fetchval("SELECT tableoid::regclass::text FROM noetl.command WHERE execution_id = $1", old)
        assert where == "noetl.command_p0"
        # the running execution goes on writing into its slice
        await pool.execute("INSERT INTO noetl.event (execution_id, event_id, event_type) VALUES ($1, $2, 'x')",
                           old, old + 50)
        assert (await _rows(pool, old))["event"] == 4
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await pool.execute("UPDATE noetl.event SET status = 'y' WHERE execution_id = $1", old)
    finally:
        await pool.close()


async def test_generic_plans_of_the_write_statement_go_by_key_in_every_slice(database_factory):
    """The hot path's statement as the write pool runs it (generic plan, no seq scans): every slice
    is reached by index, never scanned. Postgres 15 does not prune an UPDATE's partitions at run
    time in a generic plan, so each slice costs one index probe (docs/architecture.md). An event
    naming its command reads that one command row, however many the slice holds (a hash join
    once read all of them, index order, for every write)."""
    pool = await _shard(database_factory)
    try:
        for _ in range(4):  # more slices than one
            await partitions.ensure_ahead(pool, slice_ms=DAY_MS, ahead=2,
                                          now_ms=partitions.timestamp_ms((await partitions.slices(pool))[-1].upper))
        now_id = compose(int(time.time() * 1000), 0, 1)
        await _execution(pool, now_id, "RUNNING", None)
        await pool.execute("INSERT INTO noetl.command (command_id, execution_id, step, tool_kind, status) "
                           "SELECT $1::bigint + 200 + g, $1, 'loop', 'python', 'COMPLETED' "
                           "FROM generate_series(1, 300) g", now_id)
        sql = writes.statement(("upd_exec", "ins_event"), (9, 1))
        async with pool.acquire() as conn:
            await conn.execute("SET plan_cache_mode = force_generic_plan")
            await conn.execute("SET enable_seqscan = off")  # as the write pool
            await conn.execute(f"PREPARE w AS {sql}")
            ev = json.dumps([{"event_id": now_id + 9, "execution_id": now_id, "event_type": "x", "command_id": now_id + 100}])
            plan = "\n".join(r[0] for r in await conn.fetch(
                f"EXPLAIN (ANALYZE, COSTS OFF) EXECUTE w(ARRAY[{now_id}]::bigint[], ARRAY[NULL]::bytea[], "
                "ARRAY[NULL]::bigint[], ARRAY[NULL]::text[], ARRAY[NULL]::jsonb[], ARRAY[NULL]::text[], "
                f"ARRAY[NULL]::bigint[], ARRAY[NULL]::text[], ARRAY[NULL]::text[], '{ev}')"))
        slices = len(await partitions.slices(pool))
        assert slices >= 6
        assert "Seq Scan" not in plan, plan
        command_rows = [int(m) for m in re.findall(r" on command_\w+ .*actual time=\S+ rows=(\d+)", plan)]
        assert command_rows and max(command_rows) <= 1, plan
    finally:
        await pool.close()


async def test_history_routes_and_gauges(database_factory):
    """GET /api/internal/retention and POST .../run on the real app (internal token), and the
    history gauges on /metrics once the status loop ran."""
    dbs = await database_factory(blank=True)
    h = await start_harness(dbs, retention_days=30.0)
    try:
        auth = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}
        assert (await h.client.get("/api/internal/retention")).status == 403
        resp = await h.client.get("/api/internal/retention", headers=auth)
        assert resp.status == 200
        body = await resp.json()
        assert body["enabled"] is True and body["retention_days"] == 30.0 and body["slices"][0] == "p0"
        assert {t["table"] for t in body["tables"]} >= set(partitions.TABLES)
        assert body["database_bytes"] > 0
        resp = await h.client.post("/api/internal/retention/run", headers=auth)
        assert resp.status == 200
        assert (await resp.json())["dropped"] == []
        body = await (await h.client.get("/api/internal/retention", headers=auth)).json()
        assert body["last_run_at"] is not None
        for _ in range(100):  # the status loop's first pass runs as the app starts
            metrics = await (await h.client.get("/metrics")).text()
            if "noetl_history_table_bytes{" in metrics:
                break
            await asyncio.sleep(0.1)
        assert 'noetl_history_table_bytes{shard="0",table="event"}' in metrics
        assert 'noetl_retention_enabled{shard="0"} 1.0' in metrics
    finally:
        await stop_harness(h)


async def test_a_run_stopped_halfway_is_finished_by_the_next(database_factory, tmp_path):
    """Some tables of a slice detached (a run stopped there), and a whole slice detached and
    archived but not dropped: the next run removes both, each archived once."""
    pool = await _shard(database_factory)
    try:
        old = compose(int(time.time() * 1000) - 100 * DAY_MS, 0, 1)
        await _execution(pool, old, "COMPLETED", 90)
        p0 = (await partitions.slices(pool))[0]
        await partitions.detach(pool, "event", p0)  # stopped after the first detach
        assert await partitions.detached(pool) == ["event_p0"]
        report = await retention.run(pool, retention.Policy(days=30, archive_dir=str(tmp_path)), shard_index=0,
                                     now_ms=_later())
        assert [d.slice for d in report.dropped] == ["p0"]
        assert await partitions.detached(pool) == []
        archived = history_archive.read_execution(tmp_path, old)
        assert archived is not None and len(archived["event"]) == 3  # the detached table was archived too
        last = (await partitions.slices(pool))[-1]  # a dated slice's table, left detached, is seen too
        await partitions.detach(pool, "event", last)
        assert await partitions.detached(pool) == [last.partition("event")]
    finally:
        await pool.close()


async def test_a_row_past_the_slices_is_refused_loudly(database_factory):
    """No default partition (0009): a row whose slice was not created fails, named, instead of
    landing where it would block creating that slice."""
    pool = await _shard(database_factory)
    try:
        past = compose(partitions.timestamp_ms((await partitions.slices(pool))[-1].upper) + 1000, 0, 1)
        with pytest.raises(asyncpg.PostgresError, match="no partition of relation"):
            await _execution(pool, past, "RUNNING", None)
    finally:
        await pool.close()


async def test_rows_in_a_default_partition_become_a_slice(database_factory):
    """A shard that wrote past its slices before 0009: those rows keep their place in a slice of
    their own, the same in every table, and the shard's next slices follow it."""
    dbs = await database_factory(blank=True)
    pool = await create_pool(dbs.shard_dsn, min_size=1, max_size=2)
    try:
        await apply_migrations(pool, "shard", [m for m in load_migrations("shard") if m.version < 8])
        late = compose(int(time.time() * 1000) + 3000, 0, 1)  # past p0, which ends at the migration
        await _execution(pool, late, "RUNNING", None)
        await apply_migrations(pool, "shard")
        names = [s.name for s in await partitions.slices(pool)]
        assert len(names) == 2 and names[1] == partitions.slice_name(partitions.timestamp_ms(late)).lower()
        for table in partitions.TABLES:
            assert [s.name for s in await partitions.slices(pool, table)] == names
            assert await pool.fetchval("SELECT to_regclass($1)", f"noetl.{table}_default") is None
        assert await _rows(pool, late) == {"execution": 1, "event": 3, "command": 1, "step_result": 1}
        assert await partitions.ensure_ahead(pool, slice_ms=DAY_MS, ahead=2)  # continues after it
        await pool.execute("INSERT INTO noetl.event (execution_id, event_id, event_type) VALUES ($1, $2, 'x')",
                           late, late + 50)
        assert (await _rows(pool, late))["event"] == 4
    finally:
        await pool.close()


async def test_a_detach_stopped_between_its_steps_is_finished_by_the_next_run(database_factory):
    """DETACH ... CONCURRENTLY commits in two steps; one cancelled while it waits for an open
    transaction leaves the partition "detach pending": the next run finalizes it."""
    pool = await _shard(database_factory)
    try:
        old = compose(int(time.time() * 1000) - 100 * DAY_MS, 0, 1)
        await _execution(pool, old, "COMPLETED", 90)
        async with pool.acquire() as reader, pool.acquire() as conn:
            tx = reader.transaction()
            await tx.start()
            await reader.fetchval("SELECT count(*) FROM noetl.event")  # holds the parent: the second step waits
            await conn.execute("SET statement_timeout = '500ms'")
            with pytest.raises(asyncpg.QueryCanceledError):
                await conn.execute("ALTER TABLE noetl.event DETACH PARTITION noetl.event_p0 CONCURRENTLY")
            await conn.execute("RESET statement_timeout")
            await tx.rollback()
        assert await pool.fetchval("SELECT inhdetachpending FROM pg_inherits "
                                   "WHERE inhrelid = 'noetl.event_p0'::regclass") is True
        report = await retention.run(pool, retention.Policy(days=30), shard_index=0, now_ms=_later())
        assert [d.slice for d in report.dropped] == ["p0"]
        assert await pool.fetchval("SELECT to_regclass('noetl.event_p0')") is None
        assert set((await _rows(pool, old)).values()) == {0}
    finally:
        await pool.close()


async def test_writers_go_on_while_retention_removes_a_slice(database_factory):
    """A running execution in today's slice keeps writing while a run detaches and drops the old
    slice: every write lands, none fails, and its rows are all there after."""
    pool = await _shard(database_factory)
    try:
        old = compose(int(time.time() * 1000) - 100 * DAY_MS, 0, 1)
        for i in range(10):
            await _execution(pool, old + i * 1000, "COMPLETED", 90, events=20)
        running = compose(int(time.time() * 1000), 0, 3)
        await _execution(pool, running, "RUNNING", None)
        stop = asyncio.Event()
        written = 0

        async def writer() -> None:
            nonlocal written
            while not stop.is_set():
                await pool.execute("INSERT INTO noetl.event (execution_id, event_id, event_type) "
                                   "VALUES ($1, $2, 'worker.heartbeat')", running, running + 1000 + written)
                written += 1

        task = asyncio.ensure_future(writer())
        while written < 5:
            await asyncio.sleep(0.01)
        report = await retention.run(pool, retention.Policy(days=30), shard_index=0, now_ms=_later())
        stop.set()
        await task  # raises if any write failed
        assert [d.slice for d in report.dropped] == ["p0"]
        assert report.dropped[0].executions == 10
        assert (await _rows(pool, running))["event"] == 3 + written
    finally:
        await pool.close()
