"""The bodies of the fleet routes the CLI calls, as it reads them (unknown fields are ignored, so
a newer shard adding fields does not break an older CLI)."""

from __future__ import annotations

import msgspec

from noetl_common.sharding import Epoch, ShardMap


class RegisteredShard(msgspec.Struct, kw_only=True):
    """A shard as registered in the cluster database (`GET /api/shard-map`, `shards`)."""

    index: int
    url: str = ""
    draining: bool = False


class ShardMapAnswer(msgspec.Struct, kw_only=True):
    """`GET /api/shard-map` (public)."""

    epochs: list[Epoch]
    # None: a fleet that does not register shard URLs (older than online scaling).
    shards: list[RegisteredShard] | None = None

    def as_map(self) -> ShardMap:
        return ShardMap(epochs=tuple(sorted(self.epochs, key=lambda e: e.effective_from_ms)))

    def newest(self) -> Epoch:
        return max(self.epochs, key=lambda e: e.effective_from_ms)


class CommitEpochRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    """`POST /api/internal/shard-map/epochs`: idempotent when the newest epoch already has the count."""

    shard_count: int
    grace_ms: int | None = None


class CommitEpochAnswer(msgspec.Struct, kw_only=True):
    epochs: list[Epoch]
    effective_from_ms: int
    shard_count: int


class ShardStatus(msgspec.Struct, kw_only=True):
    """`GET /api/internal/shard/status` of one shard (bearer)."""

    shard: int
    epoch: Epoch | None = None              # the epoch in force
    pending_epoch: Epoch | None = None      # committed, not yet in force
    shard_count_now: int = 0
    draining: bool = False
    running_executions: int = 0
    total_executions: int = 0
    outbox_pending: int = 0
    drained: bool = False
