"""Keeps this shard's shard map confirmed: a reload on every NOTIFY from a committing
transaction (heard by the shard's cluster_listener), one every
`NOETL_SHARD_MAP_REFRESH_SECONDS` whatever happens to that connection, and one before a write
when the map's minting horizon is getting close (`ensure_fresh`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Callable

from aiohttp import web

from noetl_common.background import Backoff, Loop
from noetl_common.minting import ConfirmedMap, MapStale, now_ms

from .cluster_listener import ClusterListener
from .state import ShardServices
from .store import shard_map as shard_map_store

log = logging.getLogger("noetl.api_shard.map")


class MapKeeper:
    def __init__(self, svc: ShardServices, listener: ClusterListener, clock: Callable[[], int] = now_ms) -> None:
        self.svc = svc
        self.clock = clock
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self.reloads = 0
        refresh = svc.settings.map_refresh_seconds
        # Reload on NOTIFY or every refresh interval; a failed reload is retried sooner, never
        # later than the interval (the minter refuses ids once the horizon passes).
        self.loops = (
            Loop("shard-map-refresh", self._refresh, metrics=svc.metrics.loops, interval=refresh,
                 first_delay=refresh, backoff=Backoff(first=min(0.5, refresh), cap=refresh), sleep=self._wake_or,
                 logger=log),
        )
        # A reload on every NOTIFY, and on (re)connecting: something may have been committed while
        # nobody listened.
        listener.follow(shard_map_store.CHANNEL, lambda _payload: self._wake.set(),
                        lambda _listening: self._wake.set())

    @property
    def grace_ms(self) -> int:
        return self.svc.settings.epoch_grace_ms

    async def reload(self) -> ConfirmedMap:
        """Read the map under the table lock and adopt it. Concurrent callers share one read
        (whoever waited for the lock finds a confirmation at least as recent as its request)."""
        asked_at = self.clock()
        async with self._lock:
            if self.svc.shard_map.confirmed.confirmed_at_ms >= asked_at:
                return self.svc.shard_map.confirmed
            loaded = await shard_map_store.load_confirmed(self.svc.cluster_pool, self.clock)
            if loaded is None:
                raise RuntimeError("the cluster shard_map table is empty")
            previous = self.svc.shard_map.current
            if self.svc.shard_map.confirm(loaded):
                log.info("shard map is now %s (was %s)", _epochs(loaded), _epochs_of(previous))
            self.reloads += 1
            return loaded

    async def _refresh(self) -> None:
        await self.reload()

    async def ensure_fresh(self) -> None:
        """Before a write: reload when less than a quarter of the grace is left before the
        horizon (the periodic refresh normally keeps it far away). A failed reload leaves the
        minter to refuse ids past the horizon, so a write is refused, never misminted."""
        horizon = self.svc.mint_owned_id.horizon_ms()
        if horizon - self.clock() > self.grace_ms // 4:
            return
        try:
            await asyncio.wait_for(self.reload(), timeout=max(self.grace_ms / 4000, 0.5))
        except Exception as exc:
            log.warning("shard map reload before a write failed: %s: %s", type(exc).__name__, exc)
            if self.svc.mint_owned_id.horizon_ms() <= self.clock():
                raise MapStale(self.svc.settings.shard_index, horizon) from None

    async def _wake_or(self, seconds: float) -> None:
        """The refresh loop's pause: over at a NOTIFY, or after `seconds`."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()


def _epochs(confirmed: ConfirmedMap) -> list[tuple[int, int]]:
    return _epochs_of(confirmed.shard_map)


def _epochs_of(shard_map) -> list[tuple[int, int]]:
    return [(e.effective_from_ms, e.shard_count) for e in shard_map.epochs]


KEEPER = web.AppKey("map_keeper", MapKeeper)


@web.middleware
async def fresh_map_for_writes(request: web.Request, handler):
    """Writes mint ids: make sure the map is confirmed well before its horizon first."""
    if request.method == "POST" and not request.path.startswith("/api/internal/"):
        await request.app[KEEPER].ensure_fresh()
    return await handler(request)
