"""The shard's per-execution tables are range-partitioned by execution_id (migration 0007): one
slice of ids is one span of time, the same bounds in every table. This module lists the slices,
creates the next ones ahead of time, and detaches and drops a whole slice (retention).

Every statement that changes a parent table runs with a short lock_timeout: a writer waiting
behind it waits at most that long, and the maintenance is simply tried again later."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime, timezone

import asyncpg
import msgspec

from noetl_common.ids import EPOCH_MS, TIMESTAMP_SHIFT, timestamp_ms

# Children first, execution last: retention checks an execution slice's rows before it removes
# anything, so that partition must be the last to go.
TABLES = ("event", "command", "transient", "execution_summary", "step_timeline", "step_result", "loop_items",
          "loop_result", "result_store", "frame", "stage", "execution")
REFERENCE = "execution"
LOCK_TIMEOUT = "500ms"
DROP_PACE = 16 * 2**20  # bytes per second of dropped tables (see drop)

_BOUND = re.compile(r"FOR VALUES FROM \((MINVALUE|'?-?\d+'?)\) TO \((MAXVALUE|'?-?\d+'?)\)")


class Slice(msgspec.Struct, frozen=True):
    name: str              # partition suffix: <table>_<name>
    lower: int | None      # None: MINVALUE (the pre-partitioning history, p0)
    upper: int

    @property
    def upper_ms(self) -> int:
        return timestamp_ms(self.upper)

    def partition(self, table: str) -> str:
        return f"{table}_{self.name}"


def id_at(unix_ms: int) -> int:
    """The smallest snowflake minted at `unix_ms` (node and sequence 0)."""
    return (unix_ms - EPOCH_MS) << TIMESTAMP_SHIFT


def slice_name(lower_ms: int) -> str:
    return "p" + datetime.fromtimestamp(lower_ms / 1000, timezone.utc).strftime("%Y%m%dT%H%M%S")


def planned(after_upper: int, now_ms: int, slice_ms: int, ahead: int) -> list[Slice]:
    """The slices to create so that ids up to `ahead` slices past now have a partition: from the
    highest existing bound on, each ending on a multiple of `slice_ms` (the first may be short)."""
    out: list[Slice] = []
    lower_ms = timestamp_ms(after_upper)
    horizon = now_ms + ahead * slice_ms
    while lower_ms < horizon:
        upper_ms = (lower_ms // slice_ms + 1) * slice_ms
        out.append(Slice(slice_name(lower_ms), id_at(lower_ms), id_at(upper_ms)))
        lower_ms = upper_ms
    return out


def _parse_bound(text: str) -> tuple[int | None, int] | None:
    m = _BOUND.search(text)
    if not m or m.group(2) == "MAXVALUE":
        return None
    low = None if m.group(1) == "MINVALUE" else int(m.group(1).strip("'"))
    return low, int(m.group(2).strip("'"))


async def slices(conn: asyncpg.Connection | asyncpg.Pool, table: str = REFERENCE) -> list[Slice]:
    """The range partitions of `table`, oldest first."""
    rows = await conn.fetch(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
        "JOIN pg_namespace n ON n.oid = p.relnamespace WHERE n.nspname = 'noetl' AND p.relname = $1", table)
    out = []
    for r in rows:
        bound = _parse_bound(r["bound"])
        if bound is not None:
            out.append(Slice(r["relname"][len(table) + 1:], bound[0], bound[1]))
    return sorted(out, key=lambda s: s.upper)


async def ensure_ahead(pool: asyncpg.Pool, *, slice_ms: int, ahead: int, now_ms: int | None = None) -> list[str]:
    """Create the slices up to `ahead` past now in every table; the names created. Each partition
    is built as a table of its own and attached (ATTACH locks the parent in SHARE UPDATE EXCLUSIVE
    mode: writers go on; CREATE ... PARTITION OF would block them)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    existing = await slices(pool)
    if not existing:
        return []  # not partitioned (should not happen past migration 0007)
    created = []
    for s in planned(existing[-1].upper, now_ms, slice_ms, ahead):
        for table in TABLES:
            await _attach_new(pool, table, s)
        created.append(s.name)
    return created


async def _attach_new(pool: asyncpg.Pool, table: str, s: Slice) -> None:
    part = s.partition(table)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS noetl.{part} (LIKE noetl.{table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
            f"INCLUDING STORAGE)")
        # The bound as a check first: ATTACH then needs no scan to prove it.
        await conn.execute(f"ALTER TABLE noetl.{part} ADD CONSTRAINT {part}_bound "
                           f"CHECK (execution_id IS NOT NULL AND execution_id >= {s.lower} AND execution_id < {s.upper})")
        await conn.execute(f"ALTER TABLE noetl.{table} ATTACH PARTITION noetl.{part} "
                           f"FOR VALUES FROM ({s.lower}) TO ({s.upper})")
        await conn.execute(f"ALTER TABLE noetl.{part} DROP CONSTRAINT {part}_bound")


class Blockers(msgspec.Struct, frozen=True):
    executions: int   # all of the slice's executions
    running: int      # executions not finished
    retained: int     # finished, but within their retention


async def blockers(conn: asyncpg.Connection | asyncpg.Pool, s: Slice, *, default_days: float,
                   path_days: dict[str, float]) -> Blockers:
    """What keeps slice `s`: its executions still running, or finished less than their path's
    retention (default_days for paths not listed) ago."""
    row = await conn.fetchrow(
        f"SELECT count(*) AS executions, "
        f"count(*) FILTER (WHERE x.status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')) AS running, "
        f"count(*) FILTER (WHERE x.status IN ('COMPLETED', 'FAILED', 'CANCELLED') AND coalesce(x.ended_at, x.updated_at) "
        f"  > now() - make_interval(secs => 86400 * coalesce(o.days, $3))) AS retained "
        f"FROM noetl.{s.partition(REFERENCE)} x "
        f"LEFT JOIN unnest($1::text[], $2::float8[]) AS o(path, days) ON o.path = x.path",
        list(path_days), list(path_days.values()), default_days)
    return Blockers(executions=row["executions"], running=row["running"], retained=row["retained"])


async def detach(pool: asyncpg.Pool, table: str, s: Slice) -> float:
    """Detach one table's partition of `s` (if still attached: a run that stopped halfway left
    some detached); the milliseconds it took. `DETACH ... CONCURRENTLY` never locks the parent
    against writers (SHARE UPDATE EXCLUSIVE); it waits, holding nothing, for the transactions that
    may still use the partition, then takes the partition itself (ACCESS EXCLUSIVE) for the final
    catalog change. A generic plan locks every partition, so that last moment is bounded by the
    lock_timeout; one stopped between the two steps leaves the partition "detach pending", which
    the next run's FINALIZE completes. The detached table keeps its rows until `drop`."""
    part = f"noetl.{s.partition(table)}"
    async with pool.acquire() as conn:
        started = time.perf_counter()
        pending = await conn.fetchval(
            "SELECT i.inhdetachpending FROM pg_inherits i WHERE i.inhrelid = to_regclass($1)", part)
        if pending is None:
            return 0.0
        # Not in a transaction block (CONCURRENTLY cannot be), so the settings are set and reset.
        # Writers' commits wait on the WAL flush; a detach's own commits (two each) need not add
        # to it: one lost in a crash is simply done again by the next run.
        await conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'; SET synchronous_commit = off")
        try:
            await conn.execute(f"ALTER TABLE noetl.{table} DETACH PARTITION {part} "
                               f"{'FINALIZE' if pending else 'CONCURRENTLY'}")
        finally:
            await conn.execute("RESET lock_timeout; RESET synchronous_commit")
        return (time.perf_counter() - started) * 1000


async def drop(pool: asyncpg.Pool, s: Slice, *, pace: float = DROP_PACE) -> None:
    """Drop the (detached) tables of `s` one file at a time: each index (or the constraint it
    backs), then the table, each followed by a rest as long as its size takes at `pace` bytes per
    second. Removing a relation's files frees their extents in one file-system transaction; on a
    volume mounted with online discard (this machine's), every fsync behind that commit (the
    writers' WAL flushes) stalls for it, ~12 ms for 650 MB at once, and freeing the cached pages is
    CPU in the dropping backend. A file at a time keeps each stall short, and paced they touch a
    small share of the writers' commits (at 64 MB/s writers' p99 rose 6-19% while a run worked,
    at 16 MB/s it did not); a run over a day's slices takes minutes instead of seconds, which a
    background job can afford. The drops' commits do not wait for the WAL flush
    (one lost in a crash leaves a detached table, which the next run drops)."""
    for table in TABLES:
        name = f"noetl.{s.partition(table)}"
        # Largest index first, the table (heap and TOAST: what its indexes leave) last.
        steps = await pool.fetch(
            "SELECT CASE WHEN c.conname IS NULL THEN format('DROP INDEX noetl.%I', ic.relname) "
            "ELSE format('ALTER TABLE %s DROP CONSTRAINT %I', $1::text, c.conname) END AS ddl, "
            "pg_relation_size(i.indexrelid) AS size, false AS last FROM pg_index i "
            "JOIN pg_class ic ON ic.oid = i.indexrelid "
            "LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid "
            "WHERE i.indrelid = to_regclass($1) "
            "UNION ALL SELECT format('DROP TABLE IF EXISTS %s', $1::text), "
            "coalesce(pg_table_size(to_regclass($1)), 0), true ORDER BY last, size DESC", name)
        for step in steps:
            async with pool.acquire() as conn:
                await conn.execute("SET synchronous_commit = off")
                try:
                    await conn.execute(step["ddl"])
                finally:
                    await conn.execute("RESET synchronous_commit")
            await asyncio.sleep(step["size"] / pace)


async def detached(conn: asyncpg.Connection | asyncpg.Pool) -> list[str]:
    """Tables of a slice detached but not dropped yet (a run that stopped halfway, or an archive
    that failed): the next run finishes them."""
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'noetl' AND c.relkind = 'r' AND NOT c.relispartition "
        "AND c.relname ~ '_p(0|[0-9]{8}t[0-9]{6})$' ORDER BY c.relname")  # names fold to lower case
    return [r["relname"] for r in rows]


class TableSize(msgspec.Struct, frozen=True):
    table: str
    bytes: int
    partitions: int


async def sizes(conn: asyncpg.Connection | asyncpg.Pool) -> list[TableSize]:
    """Bytes (with indexes and TOAST) and partition count of each partitioned table."""
    rows = await conn.fetch(
        "SELECT p.relname AS tbl, coalesce(sum(pg_total_relation_size(i.inhrelid)), 0)::bigint AS bytes, "
        "count(i.inhrelid) AS parts FROM pg_class p JOIN pg_namespace n ON n.oid = p.relnamespace "
        "LEFT JOIN pg_inherits i ON i.inhparent = p.oid "
        "WHERE n.nspname = 'noetl' AND p.relkind = 'p' GROUP BY p.relname ORDER BY p.relname")
    return [TableSize(r["tbl"], r["bytes"], r["parts"]) for r in rows]


async def live_rows(conn: asyncpg.Connection | asyncpg.Pool, relation: str) -> int:
    """The table's live rows by its statistics (an estimate, read without scanning it)."""
    return await conn.fetchval("SELECT coalesce((SELECT n_live_tup FROM pg_stat_user_tables "
                               "WHERE relid = to_regclass($1)), 0)", f"noetl.{relation}")


async def oldest_execution(conn: asyncpg.Connection | asyncpg.Pool) -> int | None:
    return await conn.fetchval("SELECT min(execution_id) FROM noetl.execution")
