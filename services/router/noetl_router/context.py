"""Everything a request handler needs, built once per app and passed around explicitly."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from noetl_common.discovery import ShardDirectory
from noetl_common.minting import now_ms

from .config import RouterSettings
from .health import HealthBoard
from .metrics import RouterMetrics
from .shardmap import ShardMapSource
from .upstream import Upstreams

if TYPE_CHECKING:
    from .event_relay import EventRelay


@dataclass
class RouterContext:
    settings: RouterSettings
    board: HealthBoard
    metrics: RouterMetrics
    directory: ShardDirectory
    upstreams: Upstreams | None = None     # set when the app starts (needs a running loop)
    shard_map: ShardMapSource | None = None
    events: "EventRelay | None" = None       # None without an internal token (the shard's relay route needs it)
    started_monotonic: float = field(default_factory=time.monotonic)

    def up(self) -> Upstreams:
        assert self.upstreams is not None, "the router app has not started"
        return self.upstreams

    def maps(self) -> ShardMapSource:
        assert self.shard_map is not None, "the router app has not started"
        return self.shard_map

    def placeable(self) -> set[int] | None:
        """Shards new executions may start on: in the count in force now and not draining
        (None before any map is known: then every healthy shard)."""
        shard_map = self.shard_map.current if self.shard_map is not None else None
        if shard_map is None:
            return None
        now = now_ms()
        return {i for i in self.directory.indexes() if shard_map.placeable(i, now)}

    def listable(self) -> list[int]:
        """Shards a cluster-wide read asks: every known shard, except one outside the placement
        set that is down (joining and not up yet: holds nothing; drained and removed: what it
        held has finished). A placeable shard that is down makes the read fail, naming it."""
        placeable = self.placeable()
        return [i for i in self.directory.indexes()
                if placeable is None or i in placeable or self.board.is_healthy(i)]


CONTEXT = web.AppKey("router_context", RouterContext)
