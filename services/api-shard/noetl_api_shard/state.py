"""What handlers need, held in the aiohttp app (no module-level state)."""

from __future__ import annotations

import time

import asyncpg
from aiohttp import web

from noetl_common.config import ShardSettings
from noetl_common.crypto import Encryptor
from noetl_common.ids import Snowflake
from noetl_common.minting import ConfirmedMap, ConfirmedView, GuardedMinter
from noetl_common.sharding import ShardMap
from noetl_common.trust import require_trusted

from .metrics import ShardMetrics
from .store.cluster_cache import ClusterCache


class ShardServices:
    """Per-process dependencies. Pools are attached at start-up (see app.py)."""

    def __init__(self, settings: ShardSettings, encryptor: Encryptor, metrics: ShardMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.encryptor = encryptor
        self.started_monotonic = time.monotonic()
        self.snowflake = Snowflake(settings.node_id)
        # Confirmed at 0 until loaded at start-up: nothing can be minted before that.
        self.shard_map = ConfirmedView(ConfirmedMap(ShardMap.single(settings.shard_count), 0))
        # Ids owned by this shard under the final map, whatever epochs are committed later
        # (execution, event, command ids); see noetl_common.minting for the rule.
        self.mint_owned_id = GuardedMinter(self.snowflake, settings.shard_index, self.shard_map,
                                           settings.epoch_grace_ms)
        self.cluster_cache = ClusterCache(settings.cluster_cache_seconds, hits=metrics.cluster_cache_hits,
                                          misses=metrics.cluster_cache_misses)
        self._shard_pool: asyncpg.Pool | None = None
        self._write_pool: asyncpg.Pool | None = None
        self._cluster_pool: asyncpg.Pool | None = None

    def new_cluster_id(self) -> int:
        """Ids of cluster-wide rows (catalog, credential, runtime) need no shard affinity."""
        return self.snowflake.next_id()

    def attach_pools(self, shard_pool: asyncpg.Pool, write_pool: asyncpg.Pool, cluster_pool: asyncpg.Pool) -> None:
        self._shard_pool = shard_pool
        self._write_pool = write_pool
        self._cluster_pool = cluster_pool

    def open_pools(self) -> dict[str, asyncpg.Pool]:
        return {name: pool for name, pool in (("shard", self._shard_pool), ("shard_write", self._write_pool),
                                              ("cluster", self._cluster_pool)) if pool}

    @property
    def shard_pool(self) -> asyncpg.Pool:
        if self._shard_pool is None:
            raise RuntimeError("the shard database pool is not open (app not started)")
        return self._shard_pool

    @property
    def write_pool(self) -> asyncpg.Pool:
        """The shard database, for the orchestrator's transactions (see app.py)."""
        if self._write_pool is None:
            raise RuntimeError("the shard write pool is not open (app not started)")
        return self._write_pool

    @property
    def cluster_pool(self) -> asyncpg.Pool:
        if self._cluster_pool is None:
            raise RuntimeError("the cluster database pool is not open (app not started)")
        return self._cluster_pool


SERVICES = web.AppKey("shard_services", ShardServices)


def services(request: web.Request) -> ShardServices:
    return request.app[SERVICES]


def trusted_services(request: web.Request, what: str) -> ShardServices:
    """The services, for a caller trusted with secrets and SQL (the internal token, or a caller in
    NOETL_TRUSTED_NETWORKS: noetl_common.trust); anyone else gets 403 naming `what`."""
    svc = services(request)
    require_trusted(request, svc.settings.internal_token, svc.settings.trusted_networks, what)
    return svc
