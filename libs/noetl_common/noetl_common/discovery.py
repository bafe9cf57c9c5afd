"""Finding shards without restarts: the bootstrap URLs (env) lead to a first shard, whose
`GET /api/shard-map` lists the epochs and every shard's recorded URL. The router, the outbox
publisher and the projector keep a `ShardDirectory` current from it."""

from __future__ import annotations

import logging
from typing import Awaitable, Callable

import aiohttp
import msgspec

from .config import ConfigError, Env, replica_slice, shard_url_pattern, shard_urls_from_env
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


class DiscoverySettings(msgspec.Struct, frozen=True):
    """How a per-shard service (publisher, projector) follows the fleet."""

    bootstrap: dict[int, str]            # every bootstrap shard, not only the served ones: any can answer
    pattern: str | None
    replica: int
    replicas: int
    interval_seconds: float

    def serves(self, shard: int) -> bool:
        return shard % self.replicas == self.replica


def discovery_from_env(env: Env, prefix: str) -> DiscoverySettings:
    """NOETL_SHARD_URLS / NOETL_SHARD_URL_PATTERN, the replica slice of `prefix`, and
    NOETL_SHARD_MAP_REFRESH_SECONDS (how often the shard map is asked for new shards)."""
    replica, replicas = replica_slice(env, prefix)
    interval = env.float("NOETL_SHARD_MAP_REFRESH_SECONDS", 2.0)
    if interval <= 0:
        raise ConfigError(f"NOETL_SHARD_MAP_REFRESH_SECONDS must be > 0, got {interval}")
    return DiscoverySettings(bootstrap=dict(enumerate(shard_urls_from_env(env))), pattern=shard_url_pattern(env),
                             replica=replica, replicas=replicas, interval_seconds=interval)


async def fetch_fleet_view(session: aiohttp.ClientSession, urls: list[str]) -> FleetView:
    """Ask shards in order until one answers `GET /api/shard-map`."""
    errors = []
    for url in urls:
        try:
            async with session.get(url + "/api/shard-map", timeout=aiohttp.ClientTimeout(total=5)) as resp:
                raw = await resp.read()
                if resp.status == 200:
                    return decode_fleet_view(raw)
                errors.append(f"{url}: HTTP {resp.status}")
        except Exception as exc:  # try the next shard
            errors.append(f"{url}: {type(exc).__name__}: {exc}"[:200])
    raise ConnectionError("no shard answered /api/shard-map: " + "; ".join(errors))


async def discover_new_shards(session: aiohttp.ClientSession, settings: DiscoverySettings,
                              directory: ShardDirectory, ensure_started: Callable[[int, str], Awaitable[None]],
                              log: logging.Logger) -> None:
    """One round (a background loop runs it every interval): read the shard map, then
    `ensure_started(shard, url)` (awaited) for every known shard this replica serves. The callee
    skips the shards already running, so a start that failed (a shard not answering yet, NATS
    refusing a subscription) is tried again next round instead of never."""
    urls = [directory.url(i) for i in directory.indexes()]
    view = await fetch_fleet_view(session, [u for u in urls if u])
    for shard in directory.update(view):
        if settings.serves(shard):
            log.info("shard %s joined at %s", shard, directory.url(shard))
    for shard in directory.indexes():
        if settings.serves(shard):
            await ensure_started(shard, directory.url(shard) or "")
