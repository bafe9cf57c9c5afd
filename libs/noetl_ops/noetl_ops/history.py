"""`retention status|run` over every shard of the fleet, and `archive show` (one execution's rows
read back from a history archive folder, for audit or replay)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec

from noetl_common.history_archive import read_execution

from .errors import OpsError
from .fleet_api import RETENTION, RETENTION_RUN, FleetApi


class ShardHistory(msgspec.Struct, kw_only=True):
    shard: int
    answer: dict[str, Any] | None = None
    error: str | None = None


async def each_shard(api: FleetApi, method: str, path: str, what: str) -> list[ShardHistory]:
    fleet = await api.shard_map()
    indexes = sorted(set(range(fleet.as_map().max_count())) | {s.index for s in fleet.shards or []})

    async def one(i: int) -> ShardHistory:
        try:
            return ShardHistory(shard=i, answer=await api.shard_call(i, fleet, method, path, dict, f"shard {i} {what}"))
        except OpsError as exc:
            return ShardHistory(shard=i, error=str(exc))

    return list(await asyncio.gather(*(one(i) for i in indexes)))


async def status(api: FleetApi) -> list[ShardHistory]:
    return await each_shard(api, "GET", RETENTION, "retention status")


async def run(api: FleetApi) -> list[ShardHistory]:
    return await each_shard(api, "POST", RETENTION_RUN, "retention run")


def render_status(rows: list[ShardHistory]) -> str:
    out = [f"{'SHARD':>5}  {'RETENTION':>10}  {'SLICES':>6}  {'DB BYTES':>14}  {'LAST RUN':>20}  OLDEST"]
    for r in rows:
        a = r.answer
        if a is None:
            out.append(f"{r.shard:>5}  {r.error}")
            continue
        days = f"{a['retention_days']:g}d" if a["enabled"] else "off"
        last = "never" if a["last_run_at"] is None else f"{a['last_run_at']:.0f}"
        out.append(f"{r.shard:>5}  {days:>10}  {len(a['slices']):>6}  {a['database_bytes']:>14}  "
                   f"{last:>20}  {a['oldest_execution_id'] or '-'}")
    return "\n".join(out)


def render_run(rows: list[ShardHistory]) -> str:
    out = []
    for r in rows:
        a = r.answer
        if a is None:
            out.append(f"shard {r.shard}: {r.error}")
        elif not a["enabled"]:
            out.append(f"shard {r.shard}: retention is off (NOETL_RETENTION_DAYS=0)")
        else:
            dropped = ", ".join(f"{d['slice']} ({d['executions']} executions, {d['events']} events)"
                                for d in a["dropped"]) or "nothing"
            kept = ", ".join(f"{k['slice']} ({k['running']} running, {k['retained']} retained)" for k in a["kept"])
            out.append(f"shard {r.shard}: removed {dropped}; longest lock {a['lock_ms']:.1f} ms; "
                       f"{a['seconds']:.2f} s" + (f"; kept {kept}" if kept else ""))
    return "\n".join(out)


def show(root: Path, execution_id: int) -> dict[str, list[dict[str, Any]]]:
    if not root.is_dir():
        raise OpsError(f"archive folder {root} does not exist")
    rows = read_execution(root, execution_id)
    if rows is None:
        raise OpsError(f"no archive under {root} holds execution {execution_id}")
    return rows
