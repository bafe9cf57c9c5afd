"""Wiring of one api-shard process: pools, migrations, shard map, routes."""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import AsyncIterator

import asyncpg
from aiohttp import web

from noetl_common.background import in_background
from noetl_common.config import ShardSettings
from noetl_common.crypto import Encryptor, load_key
from noetl_common.db import apply_migrations, create_pool, ping
from noetl_common.http import add_readiness_check, build_app
from noetl_common.observability import REGISTRY_KEY

from .execution.api import event_stream, outbox_api, projection_api, routes as execution_routes
from .execution.upkeep import retention
from .frames import routes as frames
from .execution.write.group_commit import MAX_FLUSHING
from .execution.keys import ANNOUNCER, ORCHESTRATOR, WAKEUPS
from .execution.write.orchestration import Orchestrator
from .execution.write.prompt_announce import PromptAnnouncer
from .execution.write.wakeups import Wakeups
from .metrics import ShardMetrics
from .handlers import (catalog, catalog_retire, credentials, dashboard, database, health, internal, keychain,
                       pool_status, runtime, scaling, tokens)
from . import large_writes
from .cluster_listener import ClusterListener
from .map_keeper import KEEPER, MapKeeper, fresh_map_for_writes
from .state import SERVICES, ShardServices
from .store import partitions
from .store.cluster_notify import CHANNEL as CLUSTER_CHANGES
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
                    request_timeout=settings.http.request_timeout_seconds,
                    max_in_flight=settings.http.max_in_flight)
    metrics = ShardMetrics(app[REGISTRY_KEY], str(settings.shard_index))
    svc = ShardServices(settings, encryptor, metrics)
    metrics.watch_pools(app[REGISTRY_KEY], svc.open_pools)
    metrics.watch_shard_map(app[REGISTRY_KEY], settings.shard_index, lambda: svc.shard_map.current)
    app[SERVICES] = svc
    app[WAKEUPS] = Wakeups()
    app[ANNOUNCER] = PromptAnnouncer(settings.nats_url, app[REGISTRY_KEY], str(settings.shard_index),
                                     relay_now=lambda: app[WAKEUPS].outbox_written(urgent=True))
    app[ORCHESTRATOR] = Orchestrator(svc, app[WAKEUPS], announcer=app[ANNOUNCER])
    listener = ClusterListener(settings.cluster_dsn, metrics.loops)
    listener.follow(CLUSTER_CHANGES, svc.cluster_cache.on_change, svc.cluster_cache.resync)
    app[KEEPER] = MapKeeper(svc, listener)
    app.middlewares.append(fresh_map_for_writes)
    app.middlewares.append(large_writes.middleware(large_writes.LargeWrites(
        threshold=settings.event_result_max_bytes, budget=settings.large_write_bytes,
        slots=max(1, settings.pool_max // 4), wait=settings.pool_acquire_timeout)))
    app.cleanup_ctx.append(_databases)
    app.cleanup_ctx.append(_announcer)
    app.cleanup_ctx.append(_map_keeper)
    app.cleanup_ctx.append(listener.running)  # once the map is loaded
    app.cleanup_ctx.append(in_background(*app[KEEPER].loops))
    add_readiness_check(app, "shard_db", lambda: ping(svc.shard_pool, READINESS_TIMEOUT_SECONDS))
    add_readiness_check(app, "cluster_db", lambda: ping(svc.cluster_pool, READINESS_TIMEOUT_SECONDS))
    for area in (health, pool_status, internal, scaling, catalog, catalog_retire, credentials, database, dashboard,
                 keychain, tokens, runtime, outbox_api, projection_api, event_stream, execution_routes, frames):
        area.register(app)
    retention.install(app, lambda: svc.shard_pool, settings, metrics)
    return app


async def _announcer(app: web.Application) -> AsyncIterator[None]:
    await app[ANNOUNCER].start()
    yield
    await app[ANNOUNCER].close()


async def _databases(app: web.Application) -> AsyncIterator[None]:
    svc = app[SERVICES]
    settings = svc.settings
    pools: list[asyncpg.Pool] = []
    try:
        sized = partial(create_pool, min_size=settings.pool_min, max_size=settings.pool_max,
                        acquire_timeout=settings.pool_acquire_timeout)
        shard_pool = await sized(settings.shard_dsn)
        pools.append(shard_pool)
        # The orchestrator's transactions run on connections of their own, planned once: generic
        # plans, index scans. Their write statement (store.writes) is a CTE over parameter arrays:
        # planning it per call costs as much as running it (~0.5 ms), and Postgres keeps
        # re-planning because a custom plan, which sees the arrays' lengths, always looks cheaper
        # than the generic one. Every statement of a transaction goes by key, so an index scan is
        # right whatever the parameters and the table's size; without enable_seqscan=off, a plan
        # made while a fresh table was nearly empty scans it whole on every step until the next
        # ANALYZE. Queries with optional filters, which need custom plans, stay on the shard pool.
        write_pool = await sized(settings.shard_dsn, min_size=MAX_FLUSHING,
                                 server_settings={"plan_cache_mode": "force_generic_plan", "enable_seqscan": "off"})
        pools.append(write_pool)
        cluster_pool = await sized(settings.cluster_dsn)
        pools.append(cluster_pool)
        applied = await apply_migrations(shard_pool, "shard")
        applied += await apply_migrations(cluster_pool, "cluster")
        if applied:
            log.info("applied migrations: %s", ", ".join(m.label for m in applied))
        # Slices for the ids this shard is about to mint exist before it serves: a row with no
        # slice would land in the default partition, which then blocks creating that slice.
        await partitions.ensure_ahead(shard_pool, slice_ms=int(settings.partition_slice_hours * 3_600_000),
                                      ahead=settings.partition_ahead)
    except BaseException:
        await asyncio.gather(*(p.close() for p in pools), return_exceptions=True)
        raise
    svc.attach_pools(shard_pool, write_pool, cluster_pool)
    yield
    await asyncio.gather(*(p.close() for p in pools), return_exceptions=True)


async def _map_keeper(app: web.Application) -> AsyncIterator[None]:
    """Load the map (seeding an empty one) and say where this shard is; the keeper's loops keep it fresh."""
    svc, keeper = app[SERVICES], app[KEEPER]
    settings = svc.settings
    await shard_map_store.seed_if_empty(svc.cluster_pool, settings.shard_count)
    confirmed = await keeper.reload()
    now_ms = time.time_ns() // 1_000_000
    current = confirmed.shard_map.count_at(now_ms)
    if current != settings.shard_count:
        # The map decides ownership; the env var only seeds an empty map. Say so.
        log.info("NOETL_SHARD_COUNT=%s but the cluster shard map says %s shards now; the map wins",
                 settings.shard_count, current)
    if confirmed.shard_map.draining(settings.shard_index, now_ms):
        # A restarted draining shard mints on the milliseconds before its drain epoch: never
        # below what it minted before the restart.
        newest = await shard_map_store.newest_local_id(svc.shard_pool)
        if newest is not None:
            svc.snowflake.resume_after(newest)
        log.warning("shard %s is draining: no new executions; finishing the ones it holds", settings.shard_index)
    if settings.advertise_url:
        await shard_map_store.register_endpoint(svc.cluster_pool, settings.shard_index, settings.advertise_url)
    else:
        log.warning("neither NOETL_SHARD_ADVERTISE_URL nor NOETL_SERVER_URL is set: the router, publisher and "
                    "projector cannot discover shard %s from the shard map", settings.shard_index)
    yield
