"""Issue 26: a shard with history (schema 0006) prepared online for migration 0007 while writers
go on, then migrated: 0007 neither reads p0 nor builds an index on it, every row stays, the
schema is the one an unprepared migration leaves, and the shard serves."""

from __future__ import annotations

import asyncio
import base64
import sys
import time
from urllib.parse import urlsplit

import asyncpg
import msgspec
import pytest

from noetl_common.db import apply_migrations, create_pool, load_migrations
from noetl_common.db import history_prepare
from noetl_api_shard.store import partitions

from bench.history_migration import Writers

from .conftest import start_harness, stop_harness
from .test_executions import PLAYBOOK

DAY_MS = 86_400_000
EXECUTIONS = 3000
EVENTS_EACH = 10

FILL = [
    """INSERT INTO noetl.execution (execution_id, catalog_id, path, version, status, created_at, ended_at)
       SELECT ((ms - 1704067200000) << 22), 1, 'tests/history', 1, 'COMPLETED', to_timestamp(ms / 1000.0),
              to_timestamp(ms / 1000.0)
       FROM (SELECT $1::bigint + i * 1000 AS ms FROM generate_series(0, $2::int - 1) AS i) x""",
    """INSERT INTO noetl.event (execution_id, event_id, event_type, command_id, payload)
       SELECT execution_id, execution_id + 1 + k, 'call.done', execution_id + 100, '{"n": 1}'
       FROM noetl.execution, generate_series(0, $1::int - 1) AS k""",
    """INSERT INTO noetl.command (command_id, execution_id, step, tool_kind, status)
       SELECT execution_id + 100, execution_id, 'start', 'python', 'COMPLETED' FROM noetl.execution""",
    """INSERT INTO noetl.result_store (result_id, execution_id, name, data, bytes, sha256)
       SELECT execution_id + 200, execution_id, 'start', '{"n": 1}', 8, 'x' FROM noetl.execution""",
    "INSERT INTO noetl.step_result (execution_id, step, result) SELECT execution_id, 'start', '1' FROM noetl.execution",
    "INSERT INTO noetl.transient (execution_id, name, value) SELECT execution_id, 'v', '1' FROM noetl.execution",
    """INSERT INTO noetl.execution_summary (execution_id, status, event_count)
       SELECT execution_id, 'COMPLETED', 10 FROM noetl.execution""",
    """INSERT INTO noetl.step_timeline (execution_id, entry_id, step, status)
       SELECT execution_id, execution_id + 100, 'start', 'COMPLETED' FROM noetl.execution""",
    """INSERT INTO noetl.loop_items (execution_id, step, run, item_offset, items)
       SELECT execution_id, 'loop', 1, 0, '[1, 2]' FROM noetl.execution""",
    """INSERT INTO noetl.loop_result (execution_id, step, run, idx, result)
       SELECT execution_id, 'loop', 1, 0, '1' FROM noetl.execution""",
]



async def _shard_at_0006(database_factory, fill: bool = True):
    dbs = await database_factory(blank=True)
    pool = await create_pool(dbs.shard_dsn, min_size=1, max_size=6, command_timeout=None)
    await apply_migrations(pool, "shard", [m for m in load_migrations("shard") if m.version < 7])
    if fill:
        start_ms = int(time.time() * 1000) - 10 * DAY_MS
        await pool.execute(FILL[0], start_ms, EXECUTIONS)
        await pool.execute(FILL[1], EVENTS_EACH)
        for sql in FILL[2:]:
            await pool.execute(sql)
        await pool.execute("VACUUM (ANALYZE)")
    return dbs, pool


async def _contents(pool: asyncpg.Pool) -> dict[str, tuple[int, int]]:
    """Rows and a hash of every row's values, per table (nulls left out: a later migration's new
    nullable columns, such as 0010's on event, change no row)."""
    return {t: tuple(await pool.fetchrow(
        f"SELECT count(*), coalesce(sum(hashtext(jsonb_strip_nulls(to_jsonb(x))::text)), 0) FROM noetl.{t} x"))
        for t in history_prepare.TABLES}


async def _migrate_watched(dsn: str) -> tuple[list[str], dict[str, int], float]:
    """Apply the remaining migrations on a fresh connection that receives Postgres's DEBUG1
    messages, inside one transaction of its own (the runner's becomes a savepoint), so that
    pg_stat_get_xact_numscans counts exactly the sequential scans of each p0 table the run made.
    Returns the messages, those counts and the run's seconds."""
    conn = await asyncpg.connect(dsn)
    try:
        relids = {t: await conn.fetchval("SELECT to_regclass($1)::oid", f"noetl.{t}") for t in history_prepare.TABLES}
        messages: list[str] = []
        conn.add_log_listener(lambda _c, m: messages.append(m.message))
        await conn.execute("SET client_min_messages = debug1")
        async with conn.transaction():
            started = time.perf_counter()
            await apply_migrations(conn, "shard")
            seconds = time.perf_counter() - started
            scans = {t: await conn.fetchval("SELECT pg_stat_get_xact_numscans($1)", oid) for t, oid in relids.items()}
        return messages, scans, seconds
    finally:
        await conn.close()


async def _schema(pool: asyncpg.Pool) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    indexes = await pool.fetch("SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'noetl' "
                               "ORDER BY tablename, indexname")
    constraints = await pool.fetch("SELECT conrelid::regclass::text AS rel, conname, pg_get_constraintdef(oid) AS def "
                                   "FROM pg_constraint WHERE connamespace = 'noetl'::regnamespace "
                                   "ORDER BY 1, 2")
    return ([(r["tablename"], r["indexdef"]) for r in indexes],
            [(r["rel"], r["conname"], r["def"]) for r in constraints])


async def _p0_indexes(pool: asyncpg.Pool) -> set[int]:
    return {r["indexrelid"] for r in await pool.fetch(
        "SELECT indexrelid::oid AS indexrelid FROM pg_index "
        "WHERE indrelid IN (SELECT to_regclass(t) FROM unnest($1::text[]) AS t)",
        [f"noetl.{t}_p0" if await pool.fetchval("SELECT to_regclass($1)", f"noetl.{t}_p0") else f"noetl.{t}"
         for t in history_prepare.TABLES])}


def _built_on_p0(messages: list[str]) -> list[str]:
    """Index builds on the p0 of a table with history (0010's new stage and frame tables start
    with an empty p0 of their own, whose index builds read nothing)."""
    history = tuple(f'on table "{t}_p0"' for t in history_prepare.TABLES)
    return [m for m in messages if m.startswith("building index") and any(h in m for h in history)]


def _implied(messages: list[str]) -> set[str]:
    return {m.split('"')[1] for m in messages if m.startswith("partition constraint for table")
            and m.endswith("is implied by existing constraints")}


async def test_a_prepared_shard_migrates_without_reading_or_building(database_factory):
    dbs, pool = await _shard_at_0006(database_factory)
    control_dbs, control = await _shard_at_0006(database_factory)
    lines: list[str] = []
    try:
        async with Writers(pool, path="tests/live") as writers:
            await asyncio.sleep(0.3)
            before_prepare = len(writers.latencies)
            report = await history_prepare.prepare(dbs.shard_dsn, say=lines.append, window_hours=1,
                                                   tick_seconds=0.05)
            during = len(writers.latencies) - before_prepare
            await asyncio.sleep(0.3)
        print(f"writers: {len(writers.latencies)} transactions, {during} while prepare ran "
              f"({report.seconds:.2f} s), p99 {writers.p99_ms()} ms, errors {len(writers.errors)}")
        assert writers.errors == []
        assert during > 0
        assert report.state == "prepared"
        assert [(i.index, i.action) for i in report.indexes] == [(p.name, "built") for p in history_prepare.INDEXES]
        assert [c.table for c in report.checks if c.action == "validated"] == list(history_prepare.TABLES)
        assert any("building CONCURRENTLY" in line for line in lines)
        bound = int(report.bound or 0)
        assert partitions.timestamp_ms(bound) > time.time() * 1000 + 3_000_000  # an hour ahead, minus the test
        assert max(writers.ids) < bound

        # A re-run keeps everything (the bound too: most of the window is left).
        again = await history_prepare.prepare(dbs.shard_dsn, say=lines.append, window_hours=1)
        assert again.bound == report.bound
        assert {i.action for i in again.indexes} == {"kept"} and {c.action for c in again.checks} == {"kept"}

        contents = await _contents(pool)
        indexes_before = await _p0_indexes(pool)
        messages, scans, seconds = await _migrate_watched(dbs.shard_dsn)
        print(f"0007-0009 on the prepared shard: {seconds * 1000:.0f} ms")
        assert _built_on_p0(messages) == []
        assert _implied(messages) == {f"{t}_p0" for t in history_prepare.TABLES}
        assert scans == {t: 0 for t in history_prepare.TABLES}
        assert await _p0_indexes(pool) <= indexes_before  # adopted (or dropped), none built
        assert await _contents(pool) == contents
        slices = await partitions.slices(pool)
        assert [(s.name, s.lower, s.upper) for s in slices] == [("p0", None, bound)]
        assert await pool.fetchval("SELECT to_regclass('noetl.history_prepare')") is None
        assert await pool.fetchval("SELECT count(*) FROM pg_constraint WHERE conname = $1",
                                   history_prepare.CHECK_NAME) == 0

        # The control: the same history migrated unprepared reads and builds, and ends in the same schema.
        c_messages, c_scans, c_seconds = await _migrate_watched(control_dbs.shard_dsn)
        print(f"0007-0009 on the unprepared shard: {c_seconds * 1000:.0f} ms")
        assert _built_on_p0(c_messages) and not _implied(c_messages)
        assert c_scans["event"] > 0
        assert await _schema(control) == await _schema(pool)
    finally:
        await control.close()
        await pool.close()

    # The shard serves: slices from the bound on, an execution to completion, rows where they belong.
    h = await start_harness(dbs)
    try:
        slices = await partitions.slices(h.shard)
        assert slices[0].upper == bound and slices[1].lower == bound
        await h.shard.execute("INSERT INTO noetl.execution (execution_id, catalog_id, path, version) "
                              "VALUES ($1, 1, 'tests/edge', 1), ($2, 1, 'tests/edge', 1)", bound - 1, bound)
        where = dict(await h.shard.fetch("SELECT execution_id, tableoid::regclass::text FROM noetl.execution "
                                         "WHERE path = 'tests/edge'"))
        assert where == {bound - 1: "noetl.execution_p0", bound: f"noetl.execution_{slices[1].name}"}
        await h.shard.execute("DELETE FROM noetl.execution WHERE path = 'tests/edge'")
        eid = await _run_to_completion(h.client)
        assert await h.shard.fetchval("SELECT tableoid::regclass::text FROM noetl.event WHERE execution_id = $1 "
                                      "LIMIT 1", int(eid)) == "noetl.event_p0"  # minted before the bound
    finally:
        await stop_harness(h)


async def _run_to_completion(c) -> str:
    r = await c.post("/api/catalog/register", json={"content": base64.b64encode(PLAYBOOK).decode()})
    assert r.status == 200
    r = await c.post("/api/execute", json={"path": "tests/two_steps", "workload": {"n": 5}})
    assert r.status == 200, await r.text()
    eid = (await r.json())["execution_id"]
    for step, result in (("start", {"double": 10}), ("end", {"final": 10})):
        events = (await (await c.get(f"/api/executions/{eid}/events")).json())["events"]
        issued = next(e for e in events if e["event_type"] == "command.issued" and e["node_name"] == step)
        cid = issued["event_id"]
        assert (await c.post(f"/api/commands/{cid}/claim", json={"worker_id": "w1"})).status == 200
        r = await c.post("/api/events", json={"execution_id": eid, "name": "call.done", "node_name": step,
                                             "worker_id": "w1", "payload": {"command_id": cid, "result": result}})
        assert r.status == 200, await r.text()
    status = await (await c.get(f"/api/executions/{eid}/status")).json()
    assert status["status"] == "COMPLETED" and status["result"] == {"final": 10}
    return eid


async def test_an_interrupted_index_build_is_rebuilt_and_the_bound_moves_when_little_is_left(database_factory):
    dbs, pool = await _shard_at_0006(database_factory, fill=False)
    try:
        await pool.execute(FILL[0], int(time.time() * 1000) - DAY_MS, 50)
        await pool.execute(FILL[1], 3)
        await pool.execute(FILL[2])
        # What an interrupted CREATE INDEX CONCURRENTLY leaves: an index marked invalid.
        await pool.execute("CREATE INDEX command_p0_command_id_idx ON noetl.command (command_id)")
        await pool.execute("UPDATE pg_index SET indisvalid = false "
                           "WHERE indexrelid = 'noetl.command_p0_command_id_idx'::regclass")
        lines: list[str] = []
        now_ms = int(time.time() * 1000)
        first = await history_prepare.prepare(dbs.shard_dsn, say=lines.append, window_hours=1, now_ms=now_ms)
        assert {i.index: i.action for i in first.indexes}["command_p0_command_id_idx"] == "rebuilt"
        assert await pool.fetchval("SELECT indisvalid FROM pg_index "
                                   "WHERE indexrelid = 'noetl.command_p0_command_id_idx'::regclass")
        # 40 minutes later, less than half the hour is left: the bound moves an hour ahead of then.
        later = await history_prepare.prepare(dbs.shard_dsn, say=lines.append, window_hours=1,
                                              now_ms=now_ms + 40 * 60_000)
        assert int(later.bound or 0) == history_prepare.id_at(now_ms + 100 * 60_000)
        assert {c.action for c in later.checks} == {"validated"}
        assert any(line.startswith("moving the bound") for line in lines)
        # Past the bound the serving shard refuses new executions (why 0007 must run before it).
        with pytest.raises(asyncpg.CheckViolationError):
            await pool.execute("INSERT INTO noetl.execution (execution_id, catalog_id, path, version) "
                               "VALUES ($1, 1, 'tests/late', 1)", int(later.bound or 0))
        # Called off: everything goes, and nothing is refused any more.
        undone = await history_prepare.unprepare(dbs.shard_dsn, say=lines.append)
        assert undone.state == "unprepared"
        await pool.execute("INSERT INTO noetl.execution (execution_id, catalog_id, path, version) "
                           "VALUES ($1, 1, 'tests/late', 1)", int(later.bound or 0))
        assert await pool.fetchval("SELECT count(*) FROM pg_indexes WHERE indexname = ANY($1::text[])",
                                   [p.name for p in history_prepare.INDEXES]) == 0
        assert await pool.fetchval("SELECT to_regclass('noetl.history_prepare')") is None
        # A partitioned shard is left alone.
        await pool.execute("DELETE FROM noetl.execution WHERE path = 'tests/late'")  # past 0007's own bound
        await apply_migrations(pool, "shard")
        assert (await history_prepare.prepare(dbs.shard_dsn, say=lines.append)).state == "partitioned"
        assert lines[-1].startswith("already partitioned")
    finally:
        await pool.close()


async def _ops(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "noetl_ops", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_the_cli_prepares_each_database_given_without_printing_its_dsn(database_factory, tmp_path):
    dbs, pool = await _shard_at_0006(database_factory, fill=False)
    try:
        dsn_file = tmp_path / "shard-0-dsn"
        dsn_file.write_text(dbs.shard_dsn + "\n")
        code, out, err = await _ops("history", "prepare", "--dsn-file", str(dsn_file), "--hours", "2", "--json")
        assert code == 0, err
        (row,) = msgspec.json.decode(out)
        assert row["database"].endswith(f"/{dbs.shard_name}") and row["report"]["state"] == "prepared"
        assert "building CONCURRENTLY" in err and "ready: p0 ends at" in err  # progress on stderr with --json
        password = urlsplit(dbs.shard_dsn).password
        assert not password or password not in out + err
        code, out, err = await _ops("history", "unprepare", "--dsn-file", str(dsn_file))
        assert code == 0 and "dropped" in out
        code, _, err = await _ops("history", "prepare", "--dsn-file", str(tmp_path / "missing"))
        assert code == 1 and "--dsn-file" in err and "missing" in err
    finally:
        await pool.close()
