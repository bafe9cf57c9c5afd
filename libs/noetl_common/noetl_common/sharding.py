"""Execution-id sharding: the hash every NoETL component agrees on, and the epoch shard map."""

from __future__ import annotations

import bisect
import struct

import msgspec
import xxhash

from .ids import timestamp_ms

# Never change: it would move every existing execution to another shard.
SHARD_HASH_SEED = 0


def shard_for(entity_id: int, shard_count: int) -> int:
    """XXH64(seed 0) of the id as 8 little-endian signed bytes, modulo shard_count; 0 when <= 1."""
    if shard_count <= 1:
        return 0
    digest = xxhash.xxh64_intdigest(struct.pack("<q", entity_id), seed=SHARD_HASH_SEED)
    return digest % shard_count


class Epoch(msgspec.Struct, frozen=True):
    """From `effective_from_ms` (unix ms) on, new ids spread over `shard_count` shards."""

    effective_from_ms: int
    shard_count: int


class ShardMap(msgspec.Struct, frozen=True):
    """Ordered epochs. An id belongs to the shard count in force when it was minted, so growing
    the fleet never moves existing data."""

    epochs: tuple[Epoch, ...]

    def __post_init__(self) -> None:
        if not self.epochs:
            raise ValueError("a shard map needs at least one epoch")
        starts = [e.effective_from_ms for e in self.epochs]
        if starts != sorted(starts) or len(set(starts)) != len(starts):
            raise ValueError("shard map epochs must have strictly increasing effective_from_ms")
        if any(e.shard_count < 1 for e in self.epochs):
            raise ValueError("shard_count must be >= 1 in every epoch")

    @classmethod
    def single(cls, shard_count: int) -> "ShardMap":
        return cls(epochs=(Epoch(effective_from_ms=0, shard_count=shard_count),))

    def count_at(self, unix_ms: int) -> int:
        return self.in_force(unix_ms).shard_count

    def owner(self, entity_id: int) -> int:
        """The shard owning an id minted by this fleet (timestamp taken from the snowflake)."""
        return shard_for(entity_id, self.count_at(timestamp_ms(entity_id)))

    def max_count(self) -> int:
        return max(e.shard_count for e in self.epochs)

    def newest(self) -> Epoch:
        return self.epochs[-1]

    def in_force(self, unix_ms: int) -> Epoch:
        """The epoch deciding ownership of ids stamped `unix_ms`."""
        newest = self.epochs[-1]
        if unix_ms >= newest.effective_from_ms:
            return newest  # nearly every id: asked for each one routed and minted
        starts = [e.effective_from_ms for e in self.epochs]
        return self.epochs[max(bisect.bisect_right(starts, unix_ms) - 1, 0)]

    def pending(self, unix_ms: int) -> Epoch | None:
        """The newest epoch if it is not in force yet (epochs are appended in the future)."""
        newest = self.epochs[-1]
        return newest if newest.effective_from_ms > unix_ms else None

    def is_member(self, shard: int, unix_ms: int) -> bool:
        """Whether `shard` can own ids stamped `unix_ms`."""
        return shard < self.count_at(unix_ms)

    def placeable(self, shard: int, unix_ms: int) -> bool:
        """Whether new executions may start on `shard`: a member now, and no known epoch ends it."""
        return self.is_member(shard, unix_ms) and self.member_until(shard, unix_ms) is None

    def draining(self, shard: int, unix_ms: int) -> bool:
        """A member once that takes no new executions (removed, or about to be); a shard not yet
        added is not draining."""
        was_member = any(e.effective_from_ms <= unix_ms and e.shard_count > shard for e in self.epochs)
        return was_member and not self.placeable(shard, unix_ms)

    def member_until(self, shard: int, unix_ms: int) -> int | None:
        """Start of the first epoch after `unix_ms` that leaves `shard` out (a drain), or None."""
        for epoch in self.epochs:
            if epoch.effective_from_ms > unix_ms and epoch.shard_count <= shard:
                return epoch.effective_from_ms
        return None
