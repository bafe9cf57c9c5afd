"""Everything a request handler needs, built once per app and passed around explicitly."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aiohttp import web

from .config import RouterSettings
from .health import HealthBoard
from .metrics import RouterMetrics
from .shardmap import ShardMapSource
from .upstream import Upstreams


@dataclass
class RouterContext:
    settings: RouterSettings
    board: HealthBoard
    metrics: RouterMetrics
    upstreams: Upstreams | None = None     # set when the app starts (needs a running loop)
    shard_map: ShardMapSource | None = None
    started_monotonic: float = field(default_factory=time.monotonic)

    def up(self) -> Upstreams:
        assert self.upstreams is not None, "the router app has not started"
        return self.upstreams

    def maps(self) -> ShardMapSource:
        assert self.shard_map is not None, "the router app has not started"
        return self.shard_map


CONTEXT = web.AppKey("router_context", RouterContext)
