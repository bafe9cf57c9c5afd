"""Online pre-step for migration 0007 on a shard that already has history (issue 26).

0007 renames each per-execution table to `<table>_p0` and ATTACHes it as the slice below a bound.
Without this step that ATTACH, inside the migration's transaction at the shard's start, reads
every table to prove the bound and builds the indexes the new keys need: downtime proportional
to the history. Run against the SERVING shard (still at schema 0006), this step does that work
beforehand, with writers going on:

- the indexes 0007 would build on `<table>_p0` are built `CREATE INDEX CONCURRENTLY`, with the
  definitions and the names ATTACH would give them, so ATTACH adopts them (an index of the
  partition matching the parent's; for the parent's primary key, a unique index that 0007 turns
  into p0's key first, since ATTACH adopts only a constraint's index for a constraint);
- every table gets `CHECK (execution_id < bound)` added `NOT VALID` (a brief ACCESS EXCLUSIVE
  lock, taken with a short lock_timeout and retried) then `VALIDATE`d (SHARE UPDATE EXCLUSIVE:
  writers go on), so ATTACH finds the partition bound implied and skips its scan;
- the bound is recorded in `noetl.history_prepare`, marked ready once every index and check is
  in place; 0007 ends p0 at that bound (and drops the checks and the record).

The bound is in the future (now + the window): the check refuses every row at or past it, so the
serving shard can start executions only until then. 0007 must run before it (the rolling
restart onto the new release); a re-run with less than half the window left moves it. After 0007
the first time slice the shard creates starts at the bound (store.partitions.ensure_ahead starts
from p0's upper bound), so executions minted after 0007 land in p0 below it and in that slice
from it on.

Safe to re-run: what exists and is valid is kept, an invalid index (an interrupted CONCURRENTLY
build) is dropped and built again, and a shard already partitioned is left alone.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime, timezone
from typing import Awaitable, Callable, TypeVar

import asyncpg
import msgspec

from noetl_common.ids import EPOCH_MS, TIMESTAMP_SHIFT, timestamp_ms

# The ten tables 0007 partitions (the shard's store.partitions.TABLES, less stage and frame, which 0010 added).
TABLES = ("execution", "event", "command", "transient", "execution_summary", "step_timeline", "step_result",
          "loop_items", "loop_result", "result_store")
CHECK_NAME = "prepared_p0_bound"   # 0007 drops it by this name
RECORD = "noetl.history_prepare"   # 0007 reads the bound from it
PREPARED_VERSION = 6               # the shard schema this step prepares for 0007
LOCK_TIMEOUT = "500ms"
LOCK_TRIES = 120                   # one a second: a transaction holding a table that long is worth a look
DEFAULT_WINDOW_HOURS = 168.0

_BOUND_IN_CHECK = re.compile(r"execution_id < '?(-?\d+)")
T = TypeVar("T")
Say = Callable[[str], None]


class PrepareError(Exception):
    """What the operator must fix before the step can finish (a sentence, no traceback)."""


class IndexPlan(msgspec.Struct, frozen=True):
    table: str
    name: str      # the name ATTACH gives the index it would build on <table>_p0
    columns: str
    unique: bool = False

    def create(self) -> str:
        unique = "UNIQUE " if self.unique else ""
        return f"CREATE {unique}INDEX CONCURRENTLY IF NOT EXISTS {self.name} ON noetl.{self.table} ({self.columns})"

    def definition(self, table: str | None = None) -> str:
        """As pg_get_indexdef prints it (on `table`, default the serving table)."""
        unique = "UNIQUE " if self.unique else ""
        return f"CREATE {unique}INDEX {self.name} ON noetl.{table or self.table} USING btree ({self.columns})"


# What 0007's ATTACH would build on a 0006 table; every other index of its parents matches one
# the 0006 table already has. The keys are unique indexes 0007 turns into p0's primary key.
INDEXES = (
    IndexPlan("event", "event_p0_event_id_idx", "event_id"),                   # event_id_pidx
    IndexPlan("command", "command_p0_pkey", "execution_id, command_id", unique=True),
    IndexPlan("command", "command_p0_command_id_idx", "command_id"),          # command_id_pidx
    IndexPlan("result_store", "result_store_p0_pkey", "execution_id, result_id", unique=True),
)


class IndexStep(msgspec.Struct, kw_only=True):
    table: str
    index: str
    action: str        # kept | built | rebuilt (an invalid one was dropped first)
    seconds: float


class CheckStep(msgspec.Struct, kw_only=True):
    table: str
    action: str        # kept | validated
    lock_ms: float     # the ACCESS EXCLUSIVE moment of adding it NOT VALID (0 when kept)
    lock_waits: int    # lock_timeout misses before that
    seconds: float     # adding and validating (the validation reads the table, writers go on)


class PrepareReport(msgspec.Struct, kw_only=True):
    state: str                         # prepared | partitioned (nothing to do) | unprepared
    bound: str | None = None           # p0's upper execution id (a string: JSON readers lose bits)
    deadline: str | None = None        # UTC time of the bound: apply 0007 before it
    indexes: list[IndexStep] = []
    checks: list[CheckStep] = []
    seconds: float = 0.0


def id_at(unix_ms: int) -> int:
    return (unix_ms - EPOCH_MS) << TIMESTAMP_SHIFT


def utc(unix_ms: int) -> str:
    return datetime.fromtimestamp(unix_ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def prepare(dsn: str, *, say: Say, window_hours: float = DEFAULT_WINDOW_HOURS, now_ms: int | None = None,
                  tick_seconds: float = 10.0) -> PrepareReport:
    """Prepare the shard database at `dsn` for 0007; `say` gets one line per step and, while an
    index builds or a check validates, one every `tick_seconds`."""
    if window_hours <= 0:
        raise PrepareError(f"the window must be positive hours, got {window_hours}")
    started = time.perf_counter()
    conn = await _connect(dsn)
    watcher = await _connect(dsn)
    try:
        if not await _at_0006(conn, say):
            return PrepareReport(state="partitioned", seconds=time.perf_counter() - started)
        indexes = [await _index(conn, watcher, plan, i, say, tick_seconds) for i, plan in enumerate(INDEXES, 1)]
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        bound = await _bound(conn, now_ms, int(window_hours * 3_600_000), say)
        checks = [await _check(conn, table, bound, say, tick_seconds) for table in TABLES]
        await _mark_ready(conn, bound)
        deadline = utc(timestamp_ms(bound))
        say(f"ready: p0 ends at {bound}. Apply 0007 (restart the shard on the new release) before {deadline}: "
            f"from then on this shard refuses new executions until it runs 0007. Re-running prepare with less "
            f"than half the window left moves the bound.")
        return PrepareReport(state="prepared", bound=str(bound), deadline=deadline, indexes=indexes, checks=checks,
                             seconds=time.perf_counter() - started)
    finally:
        await watcher.close()
        await conn.close()


async def unprepare(dsn: str, *, say: Say) -> PrepareReport:
    """Undo `prepare` on a shard still at 0006 (an upgrade called off): the record first (a 0007
    running meanwhile then picks its own bound, as unprepared), then the checks, which would
    refuse executions past the bound, then the indexes."""
    started = time.perf_counter()
    conn = await _connect(dsn)
    try:
        if not await _at_0006(conn, say):
            return PrepareReport(state="partitioned", seconds=time.perf_counter() - started)
        await conn.execute(f"DROP TABLE IF EXISTS {RECORD}")
        for table in TABLES:
            await _locked(conn, f"noetl.{table}", say,
                          f"ALTER TABLE noetl.{table} DROP CONSTRAINT IF EXISTS {CHECK_NAME}")
        say(f"record and checks {CHECK_NAME} dropped")
        for plan in INDEXES:
            await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS noetl.{plan.name}")
            say(f"index {plan.name} dropped")
        return PrepareReport(state="unprepared", seconds=time.perf_counter() - started)
    finally:
        await conn.close()


async def _connect(dsn: str) -> asyncpg.Connection:
    # No statement timeout (an index build takes what it takes); only pg_catalog on the search
    # path, so pg_get_indexdef always qualifies noetl.* (a role named noetl would see it unqualified).
    return await asyncpg.connect(dsn, command_timeout=None, server_settings={"search_path": "pg_catalog"})


async def _at_0006(conn: asyncpg.Connection, say: Say) -> bool:
    """True at schema 0006; False (said) when already partitioned; otherwise PrepareError."""
    kind = await conn.fetchval("SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                               "WHERE n.nspname = 'noetl' AND c.relname = 'execution'")
    if kind is None:
        raise PrepareError("this database has no shard schema (no table noetl.execution)")
    if kind == b"p":
        say("already partitioned (migration 0007 applied): nothing to prepare")
        return False
    version = await conn.fetchval("SELECT max(version) FROM noetl.schema_migrations WHERE scope = 'shard'")
    if version is None:
        raise PrepareError("this database records no shard migrations (noetl.schema_migrations)")
    if version != PREPARED_VERSION:
        raise PrepareError(f"the shard schema is at {version:04d}; prepare works on {PREPARED_VERSION:04d} (upgrade "
                           f"to the release that has it first, or let 0007 migrate the shard as it is)")
    events = await conn.fetchval("SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'noetl.event'::regclass")
    say(f"schema {version:04d}, about {events:,} events")
    return True


async def _index(conn: asyncpg.Connection, watcher: asyncpg.Connection, plan: IndexPlan, n: int, say: Say,
                 tick: float) -> IndexStep:
    label = f"[{n}/{len(INDEXES)}] {plan.table}: {plan.name} ({plan.columns}{', unique' if plan.unique else ''})"
    row = await conn.fetchrow(
        "SELECT i.indisvalid, pg_get_indexdef(i.indexrelid) AS def FROM pg_index i "
        "WHERE i.indexrelid = to_regclass($1)", f"noetl.{plan.name}")
    action = "built"
    if row is not None and row["indisvalid"]:
        if row["def"] != plan.definition():
            raise PrepareError(f"index noetl.{plan.name} exists as `{row['def']}`, not `{plan.definition()}`: "
                               f"drop it (DROP INDEX CONCURRENTLY) and re-run")
        say(f"{label}: exists")
        return IndexStep(table=plan.table, index=plan.name, action="kept", seconds=0.0)
    started = time.perf_counter()
    if row is not None:
        say(f"{label}: dropping the invalid index an interrupted build left")
        await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS noetl.{plan.name}")
        action = "rebuilt"
    say(f"{label}: building CONCURRENTLY (writers go on)")
    pid = conn.get_server_pid()

    async def progress() -> str:
        r = await watcher.fetchrow("SELECT phase, blocks_done, blocks_total, tuples_done, tuples_total "
                                   "FROM pg_stat_progress_create_index WHERE pid = $1", pid)
        if r is None:
            return "starting"
        share = ""
        if r["blocks_total"]:
            share = f", {100 * r['blocks_done'] // r['blocks_total']}% of blocks"
        elif r["tuples_total"]:
            share = f", {100 * r['tuples_done'] // r['tuples_total']}% of tuples"
        return f"{r['phase']}{share}"

    try:
        await _ticking(conn.execute(plan.create()), f"  {plan.name}", progress, say, tick)
    except asyncpg.PostgresError as exc:
        raise PrepareError(f"building noetl.{plan.name} failed ({exc}); re-run prepare: it drops the invalid "
                           f"index and builds it again") from None
    seconds = time.perf_counter() - started
    say(f"{label}: built in {seconds:.1f} s")
    return IndexStep(table=plan.table, index=plan.name, action=action, seconds=round(seconds, 3))


async def _bound(conn: asyncpg.Connection, now_ms: int, window_ms: int, say: Say) -> int:
    """The recorded bound while at least half the window is left, else a new one a window ahead."""
    await conn.execute(f"""
        CREATE TABLE IF NOT EXISTS {RECORD} (
            only_row    boolean     PRIMARY KEY DEFAULT true CHECK (only_row),
            bound       bigint      NOT NULL,    -- p0's upper execution id; every table's check proves it
            ready       boolean     NOT NULL DEFAULT false,
            updated_at  timestamptz NOT NULL DEFAULT now()
        )""")
    await conn.execute(f"COMMENT ON TABLE {RECORD} IS 'noetl_ops history prepare: the bound migration 0007 ends "
                       f"p0 at (once ready); 0007 drops this table'")
    recorded = await conn.fetchval(f"SELECT bound FROM {RECORD}")
    if recorded is not None and timestamp_ms(recorded) - now_ms >= window_ms / 2:
        say(f"bound {recorded} (ids minted before {utc(timestamp_ms(recorded))}), as recorded")
        return int(recorded)
    bound = id_at(now_ms + window_ms)
    if recorded is not None:
        left = (timestamp_ms(recorded) - now_ms) / 3_600_000
        when = f"{left:.1f} h left" if left > 0 else f"passed {-left:.1f} h ago"
        say(f"moving the bound from {recorded} ({utc(timestamp_ms(recorded))}, {when}) to {bound}")
    else:
        say(f"bound {bound} (ids minted before {utc(timestamp_ms(bound))})")
    await conn.execute(f"INSERT INTO {RECORD} (bound, ready) VALUES ($1, false) ON CONFLICT (only_row) "
                       f"DO UPDATE SET bound = EXCLUDED.bound, ready = false, updated_at = now()", bound)
    return bound


async def _check(conn: asyncpg.Connection, table: str, bound: int, say: Say, tick: float) -> CheckStep:
    row = await conn.fetchrow("SELECT pg_get_constraintdef(oid) AS def, convalidated FROM pg_constraint "
                              "WHERE conrelid = to_regclass($1) AND conname = $2", f"noetl.{table}", CHECK_NAME)
    found = _BOUND_IN_CHECK.search(row["def"]) if row is not None else None
    if found is not None and int(found.group(1)) == bound and row["convalidated"]:
        say(f"check {table}: in place")
        return CheckStep(table=table, action="kept", lock_ms=0.0, lock_waits=0, seconds=0.0)
    started = time.perf_counter()
    lock_ms, waits = 0.0, 0
    if found is None or int(found.group(1)) != bound:
        # NOT VALID: only the catalog changes, under a lock of milliseconds; new rows are checked
        # from here on, the existing ones by VALIDATE below.
        lock_ms, waits = await _locked(
            conn, f"noetl.{table}", say, f"ALTER TABLE noetl.{table} DROP CONSTRAINT IF EXISTS {CHECK_NAME}, "
            f"ADD CONSTRAINT {CHECK_NAME} CHECK (execution_id < {bound}) NOT VALID")
    label = f"check {table}: execution_id < {bound}"
    await _ticking(conn.execute(f"ALTER TABLE noetl.{table} VALIDATE CONSTRAINT {CHECK_NAME}"),
                   f"  {label}", _validating, say, tick)
    seconds = time.perf_counter() - started
    say(f"{label}: added (lock {lock_ms:.0f} ms{f', {waits} lock waits' if waits else ''}), "
        f"validated in {seconds:.1f} s")
    return CheckStep(table=table, action="validated", lock_ms=round(lock_ms, 2), lock_waits=waits,
                     seconds=round(seconds, 3))


async def _validating() -> str:
    return "validating (reads the table; writers go on)"


async def _mark_ready(conn: asyncpg.Connection, bound: int) -> None:
    """Ready only when every index is valid and every check validated with this bound: 0007 then
    takes the bound. (Postgres proves the bound at ATTACH either way: ready only saves the read.)"""
    missing = await conn.fetchval(
        "SELECT count(*) FROM unnest($1::text[]) AS want(name) LEFT JOIN pg_index i "
        "ON i.indexrelid = to_regclass('noetl.' || want.name) WHERE i.indisvalid IS NOT TRUE",
        [p.name for p in INDEXES])
    checks = await conn.fetch("SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint "
                              "WHERE conname = $1 AND convalidated "
                              "AND conrelid IN (SELECT to_regclass(t) FROM unnest($2::text[]) AS t)",
                              CHECK_NAME, [f"noetl.{t}" for t in TABLES])
    proven = sum(1 for r in checks if (m := _BOUND_IN_CHECK.search(r["def"])) and int(m.group(1)) == bound)
    if missing or proven != len(TABLES):
        raise PrepareError(f"not ready: {missing} index(es) missing or invalid, {len(TABLES) - proven} check(s) "
                           f"missing; re-run prepare")
    await conn.execute(f"UPDATE {RECORD} SET ready = true, updated_at = now() WHERE bound = $1", bound)


async def _locked(conn: asyncpg.Connection, relation: str, say: Say, statement: str) -> tuple[float, int]:
    """Run a statement that takes `relation` in ACCESS EXCLUSIVE mode under a short lock_timeout,
    retried: writers queue behind it at most that long. Returns (ms it held the lock, misses)."""
    for attempt in range(LOCK_TRIES):
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                started = time.perf_counter()
                await conn.execute(statement)
                return (time.perf_counter() - started) * 1000, attempt
        except asyncpg.LockNotAvailableError:
            if attempt % 10 == 9:
                say(f"  {relation}: still waiting for its lock after {attempt + 1} tries (a long transaction "
                    f"holds it: see pg_stat_activity)")
            await asyncio.sleep(1.0)
    raise PrepareError(f"could not lock {relation} for {LOCK_TRIES} tries: end the long transaction holding it "
                       f"(pg_stat_activity, pg_locks) and re-run")


async def _ticking(work: Awaitable[T], label: str, progress: Callable[[], Awaitable[str]], say: Say,
                   tick: float) -> T:
    """Await `work`, saying where it is every `tick` seconds."""
    task = asyncio.ensure_future(work)
    started = time.perf_counter()
    while True:
        done, _ = await asyncio.wait({task}, timeout=tick)
        if done:
            return task.result()
        try:
            where = await progress()
        except asyncpg.PostgresError as exc:  # progress is a courtesy; the work goes on
            where = f"progress unknown ({exc})"
        say(f"{label}: {where}, {time.perf_counter() - started:.0f} s")
