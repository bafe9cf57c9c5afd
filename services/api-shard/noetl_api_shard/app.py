"""Wiring of one api-shard process: pools, migrations, shard map, routes."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import AsyncIterator

import asyncpg
from aiohttp import web

from noetl_common.config import ShardSettings
from noetl_common.crypto import Encryptor, load_key
from noetl_common.db import apply_migrations, create_pool
from noetl_common.http import add_readiness_check, build_app
from noetl_common.observability import REGISTRY_KEY

from .execution import event_stream, outbox_api, projection_api, routes as execution_routes
from .execution.keys import ORCHESTRATOR, WAKEUPS
from .execution.orchestration import Orchestrator
from .execution.wakeups import Wakeups
from .metrics import ShardMetrics
from .handlers import catalog, credentials, health, internal, keychain, runtime
from .state import SERVICES, ShardServices
from .store import shard_map as shard_map_store

SERVICE_NAME = "api-shard"
READINESS_TIMEOUT_SECONDS = 2.0

log = logging.getLogger("noetl.api_shard")


def create_app(settings: ShardSettings) -> web.Application:
    """Build the application. Bad settings (e.g. the encryption key) raise ConfigError here,
    before anything listens; databases are opened when the app starts."""
    encryptor = Encryptor(load_key(settings.encryption_key))
    app = build_app(service=SERVICE_NAME, shard=str(settings.shard_index),
                    max_body_bytes=settings.http.max_body_bytes, internal_token=settings.internal_token,
                    request_timeout=settings.http.request_timeout_seconds)
    metrics = ShardMetrics(app[REGISTRY_KEY], str(settings.shard_index))
    svc = ShardServices(settings, encryptor, metrics)
    metrics.watch_pools(app[REGISTRY_KEY], svc.open_pools)
    metrics.watch_shard_map(app[REGISTRY_KEY], settings.shard_index, lambda: svc.shard_map.current)
    app[SERVICES] = svc
    app[WAKEUPS] = Wakeups()
    app[ORCHESTRATOR] = Orchestrator(svc, app[WAKEUPS], settings.public_url)
    app.cleanup_ctx.append(_databases)
    add_readiness_check(app, "shard_db", lambda: _select_one(svc.shard_pool))
    add_readiness_check(app, "cluster_db", lambda: _select_one(svc.cluster_pool))
    for area in (health, internal, catalog, credentials, keychain, runtime, outbox_api, projection_api, event_stream,
                 execution_routes):
        area.register(app)
    return app


async def _select_one(pool: asyncpg.Pool) -> None:
    await asyncio.wait_for(pool.fetchval("SELECT 1"), READINESS_TIMEOUT_SECONDS)


async def _databases(app: web.Application) -> AsyncIterator[None]:
    svc = app[SERVICES]
    settings = svc.settings
    pools: list[asyncpg.Pool] = []
    try:
        sizes = dict(min_size=settings.pool_min, max_size=settings.pool_max,
                     acquire_timeout=settings.pool_acquire_timeout)
        shard_pool = await create_pool(settings.shard_dsn, **sizes)
        pools.append(shard_pool)
        cluster_pool = await create_pool(settings.cluster_dsn, **sizes)
        pools.append(cluster_pool)
        applied = await apply_migrations(shard_pool, "shard")
        applied += await apply_migrations(cluster_pool, "cluster")
        if applied:
            log.info("applied migrations: %s", ", ".join(m.label for m in applied))
        await _load_shard_map(svc, cluster_pool)
    except BaseException:
        await asyncio.gather(*(p.close() for p in pools), return_exceptions=True)
        raise
    svc.attach_pools(shard_pool, cluster_pool)
    yield
    await asyncio.gather(*(p.close() for p in pools), return_exceptions=True)


async def _load_shard_map(svc: ShardServices, cluster_pool: asyncpg.Pool) -> None:
    settings = svc.settings
    await shard_map_store.seed_if_empty(cluster_pool, settings.shard_count)
    loaded = await shard_map_store.load(cluster_pool)
    if loaded is None:  # seeded just above; only a concurrent wipe gets here
        raise RuntimeError("the cluster shard_map table is empty after seeding")
    svc.shard_map.replace(loaded)
    current = loaded.count_at(time.time_ns() // 1_000_000)
    if current != settings.shard_count:
        # The map decides ownership; the env var only seeds an empty map. Say so loudly.
        log.warning("NOETL_SHARD_COUNT=%s but the cluster shard map says %s shards now; the map wins",
                    settings.shard_count, current)
    if settings.shard_index >= loaded.max_count():
        log.warning("shard index %s owns no ids under the shard map (max %s shards)",
                    settings.shard_index, loaded.max_count())
