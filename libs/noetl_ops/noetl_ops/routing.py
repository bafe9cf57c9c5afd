"""Reaching one shard through the router.

The router sends a request carrying `X-Execution-ID` to the shard owning that id, so an id owned
by shard i, by the fleet's own map, reaches shard i from wherever the router is reachable (a
port-forward, an Ingress) even when the shards' own in-cluster URLs are not. The answer's
`X-Shard` header (and the shard index in the body) says who answered."""

from __future__ import annotations

from noetl_common.ids import EPOCH_MS, MAX_NODE, MAX_SEQUENCE, MAX_TIMESTAMP, compose
from noetl_common.sharding import ShardMap, shard_for


def id_owned_by(shard: int, shard_map: ShardMap, now_ms: int) -> int | None:
    """An id that `shard_map` assigns to `shard`, or None when no epoch has that many shards.

    The id's timestamp is taken inside an epoch that includes the shard: now when the epoch in
    force does, else the newest earlier one (a draining shard still owns the ids of the epochs it
    served), else the first pending one (a shard joining at the next epoch)."""
    epochs = list(shard_map.epochs)
    windows = []
    for k, epoch in enumerate(epochs):
        start = max(epoch.effective_from_ms, EPOCH_MS)
        end = epochs[k + 1].effective_from_ms if k + 1 < len(epochs) else EPOCH_MS + MAX_TIMESTAMP + 1
        if epoch.shard_count > shard and start < end:
            windows.append((start, end, epoch.shard_count))
    if not windows:
        return None
    inside = [w for w in windows if w[0] <= now_ms < w[1]]
    earlier = [w for w in windows if w[1] <= now_ms]
    start, end, count = inside[0] if inside else (earlier[-1] if earlier else windows[0])
    at = min(max(now_ms, start), end - 1)
    # About `count` draws find one; node x sequence gives 4M candidates per millisecond.
    for node in range(MAX_NODE + 1):
        for sequence in range(MAX_SEQUENCE + 1):
            candidate = compose(at, node, sequence)
            if shard_for(candidate, count) == shard:
                return candidate
    return None  # pragma: no cover - XXH64 covers every residue long before this
