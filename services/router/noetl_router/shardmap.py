"""The router's view of the fleet's shard map and shard URLs, read from a shard's
`GET /api/shard-map` at start, periodically, and whenever a shard answers 421 (the map moved on
without us) or refuses a new execution as draining."""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Sequence

from noetl_common.discovery import FleetView, decode_fleet_view
from noetl_common.sharding import ShardMap

from .upstream import Upstreams

log = logging.getLogger("noetl.router.shardmap")

MapFetcher = Callable[[], Awaitable[FleetView]]
OnLoaded = Callable[[FleetView], Awaitable[None]]


async def _nothing(_view: FleetView) -> None:
    return None


class ShardMapUnavailable(Exception):
    pass


class ShardMapSource:
    def __init__(self, fetch: MapFetcher, on_loaded: OnLoaded = _nothing) -> None:
        self._fetch = fetch
        self._on_loaded = on_loaded
        self._lock = asyncio.Lock()
        self.current: ShardMap | None = None
        self.generation = 0  # bumped on every successful refresh; lets 421 handlers coalesce

    def require(self) -> ShardMap:
        if self.current is None:
            raise ShardMapUnavailable("the shard map has not been loaded from any shard yet")
        return self.current

    async def refresh(self, seen_generation: int | None = None) -> bool:
        """Fetch the map. When `seen_generation` is given and someone refreshed since, reuse theirs
        (a burst of 421s costs one fetch)."""
        async with self._lock:
            if seen_generation is not None and self.generation != seen_generation:
                return True
            try:
                loaded = await self._fetch()
            except Exception as exc:  # keep the last good map; the next refresh tries again
                log.warning("shard map refresh failed: %s: %s", type(exc).__name__, exc)
                return False
            if loaded.shard_map != self.current:
                log.info("shard map is now %s", [(e.effective_from_ms, e.shard_count) for e in loaded.shard_map.epochs])
            await self._on_loaded(loaded)  # learn new shards before anyone routes to them
            self.current = loaded.shard_map
            self.generation += 1
            return True


def fetcher(upstreams: Upstreams, order: Callable[[], Sequence[int]]) -> MapFetcher:
    """Ask shards in `order` (healthy first) until one answers."""

    async def fetch() -> FleetView:
        errors = []
        for shard in order():
            try:
                response = await upstreams.request(shard, "GET", "/api/shard-map", headers={},
                                                   skip_unhealthy=False, retry=False,
                                                   timeout=upstreams.probe_timeout)
                async with response:
                    raw = await response.read()
                    if response.status != 200:
                        errors.append(f"shard {shard}: HTTP {response.status}")
                        continue
                return decode_fleet_view(raw)
            except Exception as exc:
                errors.append(f"shard {shard}: {type(exc).__name__}: {exc}"[:200])
        raise ShardMapUnavailable("; ".join(errors) or "no shard configured")

    return fetch
