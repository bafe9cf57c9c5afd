"""History upkeep: slices created ahead of time, and retention. A slice (one range of execution
ids, a span of time: store.partitions) is removed whole — each table's partition detached, written
to the archive if one is set, then dropped — once every execution in it finished longer ago than
its path's retention. A slice with one execution still running, or still retained, stays whole:
no running execution ever loses a row. Writers are never blocked for more than the detach itself
(a catalog change; its lock_timeout bounds the wait), and no row is deleted one by one."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Callable

import asyncpg
import msgspec
from aiohttp import web

from noetl_common.background import Backoff, Loop, in_background
from noetl_common.config import ShardSettings
from noetl_common import history_archive
from noetl_common.errors import json_response
from noetl_common.ids import timestamp_ms
from noetl_common.openapi import Op, route

from ...metrics import ShardMetrics
from ...state import services
from ...store import partitions
from . import archive

log = logging.getLogger("noetl.api_shard.retention")

# Ids are minted up to the epoch grace (seconds) past the clock; a slice is closed well after that.
CLOSED_MARGIN_MS = 600_000
# After each slice's drop, whose file removal competes with the writers' commits for the disk.
# Not between a slice's detaches: each one makes every write connection re-plan its statements at
# its next use, so back to back they cost a connection one re-plan for several, spaced out one each.
PAUSE_SECONDS = 0.2
GAUGE_SECONDS = 60.0


class Policy(msgspec.Struct, frozen=True):
    days: float                          # 0: keep forever
    path_days: dict[str, float] = {}
    archive_dir: str | None = None

    @classmethod
    def of(cls, settings: ShardSettings) -> "Policy":
        return cls(settings.retention_days, dict(settings.retention_path_days), settings.archive_dir)

    @property
    def enabled(self) -> bool:
        return self.days > 0

    @property
    def shortest_days(self) -> float:
        return min([self.days, *self.path_days.values()])


POLICY = web.AppKey("retention_policy", Policy)


class Dropped(msgspec.Struct, frozen=True):
    slice: str
    lower: int | None
    upper: int
    executions: int
    events: int                          # the archive's count, else the event table's statistics
    lock_ms: float                       # the longest detach of its tables
    archive: str | None = None           # the manifest written, if archived
    phases_ms: dict[str, float] = {}     # time in each part of the removal (where a run's cost goes)


class Kept(msgspec.Struct, frozen=True):
    slice: str
    running: int
    retained: int


class RunReport(msgspec.Struct, frozen=True):
    dropped: list[Dropped]
    kept: list[Kept]
    lock_ms: float                       # the longest a parent table was locked in this run
    seconds: float
    enabled: bool = True


async def run(pool: asyncpg.Pool, policy: Policy, *, shard_index: int, now_ms: int | None = None,
              pause: float = PAUSE_SECONDS) -> RunReport:
    """One retention pass: finish slices a previous run left detached, then remove every slice
    whose end lies beyond the shortest retention and whose executions are all finished past theirs."""
    started = time.perf_counter()
    if not policy.enabled:
        return RunReport([], [], 0.0, 0.0, enabled=False)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    await _finish_detached(pool, policy, shard_index)
    # An execution finishes after it starts, and starts at its id's time: a slice that began less
    # than the shortest retention ago holds nothing old enough, nor do the later ones. A slice
    # that has not ended (ids are still minted into it) is never removed.
    horizon_ms = now_ms - int(policy.shortest_days * 86_400_000)
    dropped: list[Dropped] = []
    kept: list[Kept] = []
    for s in await partitions.slices(pool):
        if (s.lower is not None and timestamp_ms(s.lower) > horizon_ms) \
                or s.upper_ms > now_ms - CLOSED_MARGIN_MS:
            break
        b = await partitions.blockers(pool, s, default_days=policy.days, path_days=policy.path_days)
        if b.running or b.retained:
            kept.append(Kept(s.name, b.running, b.retained))
            continue
        dropped.append(await _remove(pool, s, b.executions, policy, shard_index, pause))
    lock_ms = max((d.lock_ms for d in dropped), default=0.0)
    report = RunReport(dropped, kept, lock_ms, time.perf_counter() - started)
    await pool.execute(
        "INSERT INTO noetl.retention_run (dropped, kept, lock_ms, finished_at) VALUES ($1, $2, $3, now())",
        msgspec.to_builtins(dropped), msgspec.to_builtins(kept), lock_ms)
    return report


async def _remove(pool: asyncpg.Pool, s: partitions.Slice, executions: int, policy: Policy,
                  shard_index: int, pause: float) -> Dropped:
    """Detach every table's partition of `s`, archive it if set, drop it. The events reported are
    the archive's count, else the table's statistics: counting them would read the whole slice
    while writers compete for the same cores."""
    phases = _Phases()
    events = await partitions.live_rows(pool, s.partition("event"))
    lock_ms = 0.0
    for table in partitions.TABLES:
        lock_ms = max(lock_ms, await partitions.detach(pool, table, s))
    phases.mark("detach")
    manifest = await _archive_and_drop(pool, s, policy, shard_index, phases)
    await asyncio.sleep(pause)
    phases.mark("pause")
    if manifest is not None:
        events = next(t.rows for t in history_archive.read_manifest(Path(manifest)).tables if t.table == "event")
    log.info("retention removed slice %s: %d executions, %d events (lock %.1f ms)", s.name, executions, events,
             lock_ms)
    return Dropped(s.name, s.lower, s.upper, executions, events, lock_ms, manifest, phases.ms)


class _Phases:
    """Milliseconds spent in each named part of one slice's removal."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}
        self._at = time.perf_counter()

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.ms[name] = round(self.ms.get(name, 0.0) + (now - self._at) * 1000, 1)
        self._at = now


async def _archive_and_drop(pool: asyncpg.Pool, s: partitions.Slice, policy: Policy, shard_index: int,
                            phases: _Phases | None = None) -> str | None:
    phases = phases or _Phases()
    manifest = None
    if policy.archive_dir:
        # Tables are dropped only once the manifest is written: with one, the archive is whole
        # (a run that stopped while dropping); without, every table is still there to write.
        path = history_archive.folder(Path(policy.archive_dir), shard_index, s.name) / history_archive.MANIFEST
        if not path.exists():
            path = await archive.write(pool, Path(policy.archive_dir), s, shard_index)
        manifest = str(path)
        phases.mark("archive")
    await partitions.drop(pool, s)
    phases.mark("drop")
    return manifest


async def _finish_detached(pool: asyncpg.Pool, policy: Policy, shard_index: int) -> None:
    """Slices a run detached but did not drop (stopped, or its archive failed): finished first."""
    # The execution table goes last, detached and dropped: a slice with any table left has it.
    names = {n.rsplit("_", 1)[1] for n in await partitions.detached(pool) if n.startswith("execution_p")}
    attached = {s.name for s in await partitions.slices(pool)}
    for name in sorted(names - attached):
        bound = await pool.fetchrow(f"SELECT min(execution_id) AS lo, max(execution_id) AS hi "
                                    f"FROM noetl.execution_{name}")
        s = partitions.Slice(name, bound["lo"], (bound["hi"] or 0) + 1)
        await _archive_and_drop(pool, s, policy, shard_index)


class HistoryStatus(msgspec.Struct, frozen=True):
    enabled: bool
    retention_days: float
    path_days: dict[str, float]
    archive_dir: str | None
    slices: list[str]
    tables: list[partitions.TableSize]
    database_bytes: int
    detached: list[str]
    oldest_execution_id: str | None
    last_run_at: float | None            # unix seconds
    last_run_dropped: int


async def status(pool: asyncpg.Pool, policy: Policy) -> HistoryStatus:
    last = await pool.fetchrow("SELECT extract(epoch FROM finished_at)::float8 AS at, "
                               "jsonb_array_length(dropped) AS n FROM noetl.retention_run "
                               "WHERE finished_at IS NOT NULL ORDER BY started_at DESC LIMIT 1")
    oldest = await partitions.oldest_execution(pool)
    return HistoryStatus(
        enabled=policy.enabled, retention_days=policy.days, path_days=policy.path_days,
        archive_dir=policy.archive_dir, slices=[s.name for s in await partitions.slices(pool)],
        tables=await partitions.sizes(pool),
        database_bytes=await pool.fetchval("SELECT pg_database_size(current_database())"),
        detached=await partitions.detached(pool),
        oldest_execution_id=str(oldest) if oldest is not None else None,
        last_run_at=last["at"] if last else None, last_run_dropped=last["n"] if last else 0)


def install(app: web.Application, pool_of: Callable[[], asyncpg.Pool], settings: ShardSettings,
            metrics: ShardMetrics) -> None:
    """Three loops: slices ahead (every tenth of a slice, at most hourly), the history gauges
    (every minute) and retention; and the internal routes."""
    slice_ms = int(settings.partition_slice_hours * 3_600_000)
    policy = Policy.of(settings)
    app[POLICY] = policy
    route(app, "GET", "/api/internal/retention", get_status, Op(
        summary="This shard's history: slices, bytes per table, retention settings and last run", ok=HistoryStatus))
    route(app, "POST", "/api/internal/retention/run", post_run, Op(
        summary="Run retention now (removes whole slices whose executions all finished past retention)",
        ok=RunReport))

    async def gauges() -> None:
        st = await status(pool_of(), policy)
        metrics.history.update(
            table_bytes={t.table: t.bytes for t in st.tables}, slices=len(st.slices),
            database_bytes=st.database_bytes,
            oldest_execution_id=int(st.oldest_execution_id) if st.oldest_execution_id else None,
            last_run_at=st.last_run_at, enabled=st.enabled)

    async def ahead() -> None:
        created = await partitions.ensure_ahead(pool_of(), slice_ms=slice_ms, ahead=settings.partition_ahead)
        if created:
            log.info("created partition slice(s) %s", ", ".join(created))

    async def retain() -> None:
        report = await run(pool_of(), policy, shard_index=settings.shard_index)
        if report.dropped:
            log.info("retention removed %d slice(s) in %.2f s", len(report.dropped), report.seconds)

    every = min(slice_ms / 10_000, 3600.0)
    loops = metrics.loops
    app.cleanup_ctx.append(in_background(
        Loop("partition-ahead", ahead, metrics=loops, interval=every, first_delay=every,
             backoff=Backoff(first=5.0, cap=300.0), logger=log),
        Loop("history-status", gauges, metrics=loops, interval=GAUGE_SECONDS, backoff=Backoff(first=5.0, cap=300.0),
             logger=log)))
    if policy.enabled:
        app.cleanup_ctx.append(in_background(Loop(
            "retention", retain, metrics=loops, interval=settings.retention_interval_seconds,
            first_delay=min(60.0, settings.retention_interval_seconds),
            backoff=Backoff(first=30.0, cap=settings.retention_interval_seconds), logger=log)))


async def get_status(request: web.Request) -> web.Response:
    return json_response(await status(services(request).shard_pool, request.app[POLICY]))


async def post_run(request: web.Request) -> web.Response:
    svc = services(request)
    return json_response(await run(svc.shard_pool, request.app[POLICY], shard_index=svc.settings.shard_index))
