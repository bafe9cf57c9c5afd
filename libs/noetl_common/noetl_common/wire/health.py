"""NoETL's pool telemetry body (`GET /api/pool/status`), shared by the shard (one pool) and the
router (the fleet's sum)."""

from __future__ import annotations

from typing import Any

import msgspec


class PoolStatus(msgspec.Struct, kw_only=True):
    pool_min: int
    pool_max: int
    pool_size: int             # connections open now
    pool_available: int        # open and idle
    requests_waiting: int      # acquirers queued for a connection
    utilization: float         # in use / max, 0..1
    slots_available: int       # connections that could be handed out now (idle + not yet opened)
    status: str                # ok | saturated | unavailable


class ShardPoolStatus(PoolStatus, kw_only=True):
    """A shard's answer: its shard pool's numbers, and each pool's own."""

    shard_index: int
    pools: dict[str, PoolStatus]             # shard, cluster


class FleetPoolStatus(PoolStatus, kw_only=True):
    """The router's answer: the sums over the shards that answered, each shard's own body under
    `shards` (or `{status: unavailable, error}` for one that did not). `status` is also `degraded`
    when only some shards answered."""

    shard_count: int
    shards_reporting: int
    shards: dict[str, dict[str, Any]]


class FleetHealth(msgspec.Struct, kw_only=True):
    """The router's `/api/health`: NoETL's fields for the whole fleet, each shard's answer under
    `shards` (`{status: unreachable, error}` for one that could not be asked)."""

    status: str                # ok | unhealthy
    database: str              # connected | disconnected
    nats: str
    uptime_seconds: float
    version: str
    shard_count: int
    shards: dict[str, dict[str, Any]]


def pool_status(*, pool_min: int, pool_max: int, pool_size: int, pool_available: int,
                requests_waiting: int) -> PoolStatus:
    """The derived fields from the counts, one formula for a pool and for a sum of pools."""
    in_use = max(0, pool_size - pool_available)
    slots = max(0, pool_max - in_use)
    status = "saturated" if slots == 0 and requests_waiting > 0 else "ok"
    return PoolStatus(pool_min=pool_min, pool_max=pool_max, pool_size=pool_size, pool_available=pool_available,
                      requests_waiting=requests_waiting,
                      utilization=round(in_use / pool_max, 4) if pool_max else 0.0,
                      slots_available=slots, status=status)


UNAVAILABLE = PoolStatus(pool_min=0, pool_max=0, pool_size=0, pool_available=0, requests_waiting=0,
                         utilization=0.0, slots_available=0, status="unavailable")
