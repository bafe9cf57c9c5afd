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
