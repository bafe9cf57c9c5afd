"""Background loops: probe every shard's /readyz, refresh the shard map."""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from .health import HealthBoard
from .shardmap import ShardMapSource
from .upstream import Upstreams

log = logging.getLogger("noetl.router.background")


async def probe_all(upstreams: Upstreams) -> None:
    await asyncio.gather(*(upstreams.probe(i) for i in upstreams.directory.indexes()))


async def initial_probe(upstreams: Upstreams, board: HealthBoard) -> None:
    """At start nothing is known: a shard that fails its first probe is down right away."""
    await probe_all(upstreams)
    for i, state in enumerate(board.shards):
        if state.consecutive_failures and state.healthy:
            board.mark_down(i, state.last_error)


async def every(seconds: float, step: Callable[[], Awaitable[object]], name: str) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception:  # a loop that dies silently would stop health tracking; log and go on
            log.exception("%s failed", name)


async def refresh_map_until_loaded(shard_map: ShardMapSource, interval: float, routine: float) -> None:
    """Fast retries while no map is known (the router cannot route by id without one), then slow."""
    while True:
        await asyncio.sleep(interval if shard_map.current is None else routine)
        await shard_map.refresh()
