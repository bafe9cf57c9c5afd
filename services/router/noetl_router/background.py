"""Background loops: probe every shard's /readyz, refresh the shard map."""

from __future__ import annotations

import asyncio
import logging

from noetl_common.background import Backoff, Loop, LoopMetrics

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


def loops(ups: Upstreams, shard_map: ShardMapSource, metrics: LoopMetrics, *, probe_interval: float,
          map_interval: float) -> list[Loop]:
    """Probe every shard each interval (a loop that died silently would stop health tracking, so
    a failure is logged and the next round comes at the usual time), and refresh the map: fast
    while none is known (the router cannot route by id without one), then at the routine pace."""

    def map_pause() -> float:
        return probe_interval if shard_map.current is None else map_interval

    async def refresh_map() -> float:
        await shard_map.refresh()
        return map_pause()

    return [Loop("shard-probe", lambda: probe_all(ups), metrics=metrics, interval=probe_interval,
                 first_delay=probe_interval, backoff=Backoff(first=probe_interval, cap=probe_interval), logger=log),
            Loop("shard-map", refresh_map, metrics=metrics, first_delay=map_pause(),
                 backoff=Backoff(first=probe_interval, cap=map_interval), logger=log)]
