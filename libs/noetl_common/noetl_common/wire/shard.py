"""Health and shard diagnostics bodies (`/api/health`, `/api/runtime/shard-info`, `/api/shard-map`)."""

from __future__ import annotations

import msgspec

from ..sharding import Epoch


class ApiHealth(msgspec.Struct):
    status: str                          # ok | unhealthy
    database: str                        # connected | disconnected (cluster database, like NoETL)
    shard_database: str
    nats: str
    uptime_seconds: float
    version: str
    shard_index: int
    shard_count: int


class ServerConfig(msgspec.Struct):
    shard_index: int
    shard_count: int


class ShardInfo(msgspec.Struct):
    execution_id: int
    shard_count: int
    shard_index: int                     # computed: shard_for(execution_id, shard_count)
    source: str
    hash_function: str
    seed: int
    server_config: ServerConfig
    owner_shard: int                     # owner under this fleet's shard map (epoch-aware)


class ShardMapBody(msgspec.Struct):
    epochs: list[Epoch]
    current_shard_count: int
    shard_index: int                     # the answering shard


class ShardEndpoint(msgspec.Struct):
    index: int
    url: str
    draining: bool                       # index >= the shard count in force now


class ShardMapWithShards(msgspec.Struct):
    """`GET /api/shard-map`: the epochs, plus where every known shard is (discovery)."""

    epochs: list[Epoch]
    current_shard_count: int
    shard_index: int                     # the answering shard
    shards: list[ShardEndpoint] = []


class EpochRequest(msgspec.Struct, forbid_unknown_fields=True):
    """`POST /api/internal/shard-map/epochs`."""

    shard_count: int
    grace_ms: int | None = None


class EpochResponse(msgspec.Struct):
    epochs: list[Epoch]
    effective_from_ms: int               # of the newest epoch (the one committed, or already there)
    shard_count: int
    created: bool                        # False: the newest epoch already had this count


class ShardStatus(msgspec.Struct):
    """`GET /api/internal/shard/status`: what a shard holds, for scaling decisions."""

    shard: int
    epoch: Epoch                         # in force now
    pending_epoch: Epoch | None
    shard_count_now: int
    draining: bool                       # this shard gets no new executions (index >= count now, or a pending epoch drops it)
    running_executions: int
    total_executions: int
    outbox_pending: int
    drained: bool                        # draining and nothing running and nothing left to publish
