"""Finding shards without restarts: the bootstrap URLs (env) lead to a first shard, whose
`GET /api/shard-map` lists the epochs and every shard's recorded URL. The router, the outbox
publisher and the projector keep a `ShardDirectory` current from it."""

from __future__ import annotations

import msgspec

from .sharding import ShardMap
from .wire.shard import ShardMapWithShards


class FleetView(msgspec.Struct, frozen=True):
    """One answer of `GET /api/shard-map`: the map and the recorded shard URLs."""

    shard_map: ShardMap
    urls: dict[int, str]


def decode_fleet_view(raw: bytes) -> FleetView:
    body = msgspec.json.decode(raw, type=ShardMapWithShards)
    return FleetView(ShardMap(epochs=tuple(body.epochs)), {s.index: s.url.rstrip("/") for s in body.shards})


class ShardDirectory:
    """Shard index -> base URL. The operator's bootstrap URLs win for the shards they name (a
    shard could record a URL meant for workers, not for us); the shard map's recorded URLs fill in
    the rest; failing both, the URL pattern gives one for any index the map knows."""

    def __init__(self, bootstrap: dict[int, str], pattern: str | None = None) -> None:
        self._bootstrap = dict(bootstrap)
        self._pattern = pattern
        self._urls = dict(bootstrap)

    def url(self, shard: int) -> str | None:
        return self._urls.get(shard)

    def indexes(self) -> list[int]:
        return sorted(self._urls)

    def slots(self) -> int:
        """One past the highest known index (positions of per-shard lists, e.g. list cursors)."""
        return max(self._urls, default=-1) + 1

    def bootstrap_urls(self) -> list[str]:
        return [self._bootstrap[i] for i in sorted(self._bootstrap)]

    def update(self, view: FleetView) -> list[int]:
        """Learn from a shard map answer; returns the indexes that are new."""
        known = set(self._urls)
        wanted = dict(view.urls)
        if self._pattern is not None:
            for i in range(view.shard_map.max_count()):
                wanted.setdefault(i, self._pattern.replace("{i}", str(i)))
        for shard, url in wanted.items():
            if shard not in self._bootstrap:
                self._urls[shard] = url
        return sorted(set(self._urls) - known)
