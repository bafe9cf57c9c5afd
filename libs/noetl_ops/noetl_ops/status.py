"""`status`: one row per shard - ready, epoch, executions, outbox, projection lag, drain state -
from the shard map, each shard's status route, the platform (pods or processes) and the
projector's metrics: the same figures the dashboard shows."""

from __future__ import annotations

import asyncio
from datetime import datetime

import msgspec

from noetl_common.sharding import Epoch

from .fleet_api import FleetApi, now_ms
from .platform import Platform
from .wire import ShardMapAnswer, ShardStatus


class ShardRow(msgspec.Struct, kw_only=True):
    shard: int
    ready: bool | None             # None: not known (no platform view and no registered URL)
    epoch: str                     # shard count in force, and "->M at HH:MM:SS" when one is pending
    running: int | None
    total: int | None
    outbox: int | None
    lag: float | None
    state: str                     # active | joining | pending | draining | drained | unreachable


class FleetStatus(msgspec.Struct, kw_only=True):
    shards: list[ShardRow]
    shard_count_now: int
    pending: int | None            # the pending epoch's shard count, if one is committed


async def collect(api: FleetApi, platform: Platform | None) -> FleetStatus:
    fleet = await api.shard_map()
    shard_map = fleet.as_map()
    now = now_ms()
    count_now = shard_map.count_at(now)
    future = [e for e in fleet.epochs if e.effective_from_ms > now]
    pending = max(future, key=lambda e: e.effective_from_ms) if future else None
    newest = fleet.newest().shard_count
    readiness = await platform.readiness() if platform else await _ready_by_url(api, fleet)
    lag = await platform.projector_lag() if platform else None
    urls = await platform.shard_urls() if platform else {}
    indexes = sorted(set(range(shard_map.max_count())) | set(readiness)
                     | {s.index for s in fleet.shards or []})
    statuses = await asyncio.gather(*(api.shard_status(i, fleet, urls.get(i)) for i in indexes))
    rows = []
    for i, st in zip(indexes, statuses):
        rows.append(ShardRow(
            shard=i, ready=readiness.get(i), epoch=_epoch_column(st, count_now, pending),
            running=st.running_executions if st else None, total=st.total_executions if st else None,
            outbox=st.outbox_pending if st else None, lag=lag.get(i) if lag is not None else None,
            state=_state(i, st, count_now, newest, shard_map.max_count(), lag)))
    return FleetStatus(shards=rows, shard_count_now=count_now, pending=pending.shard_count if pending else None)


def _epoch_column(st: ShardStatus | None, count_now: int, pending: Epoch | None) -> str:
    """The shard's own view when it answered (a shard behind on the map shows it here), else the
    map's: the count in force, and the pending epoch with its effective time."""
    if st is not None and st.epoch is not None:
        count_now, pending = st.epoch.shard_count, st.pending_epoch
    return f"{count_now}" + (f"->{pending.shard_count} at {_clock(pending.effective_from_ms)}" if pending else "")


def _state(i: int, st: ShardStatus | None, count_now: int, newest: int, max_count: int,
           lag: dict[int, float] | None) -> str:
    if i >= max_count:
        return "pending"               # runs, but no epoch includes it yet
    if i >= newest or (st is not None and st.draining):
        if st is not None and st.drained and (lag is None or lag.get(i, 0) == 0):
            return "drained"
        return "draining"
    if st is None:
        return "unreachable"
    return "active" if i < count_now else "joining"


async def _ready_by_url(api: FleetApi, fleet: ShardMapAnswer) -> dict[int, bool]:
    shards = [s for s in fleet.shards or [] if s.url]
    ready = await asyncio.gather(*(api.ready(s.url) for s in shards))
    return {s.index: r for s, r in zip(shards, ready)}


def render_table(status: FleetStatus) -> str:
    head = ("SHARD", "READY", "EPOCH", "RUNNING", "TOTAL", "OUTBOX", "LAG", "STATE")
    rows = [head] + [(
        str(r.shard), {True: "yes", False: "no", None: "?"}[r.ready], r.epoch, _n(r.running), _n(r.total),
        _n(r.outbox), _n(r.lag), r.state) for r in status.shards]
    widths = [max(len(row[c]) for row in rows) for c in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    summary = f"{status.shard_count_now} shards in force"
    if status.pending is not None:
        summary += f", {status.pending} pending"
    return "\n".join(lines + [summary])


def _n(value: float | int | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _clock(unix_ms: int) -> str:
    return datetime.fromtimestamp(unix_ms / 1000).strftime("%H:%M:%S")
