"""Fixtures for the api-shard integration tests: fresh shard + cluster databases on a real
Postgres, an in-process app (aiohttp TestClient) and helpers to start the real process."""

from __future__ import annotations

import base64
import socket
import uuid
from dataclasses import dataclass
from typing import AsyncIterator, Callable

import asyncpg
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from noetl_common.config import HttpSettings, ShardSettings
from noetl_api_shard.app import create_app

from noetl_common.db import create_pool
from noetl_devstack.postgres import drop_databases
from tests.conftest import Templates

INTERNAL_TOKEN = "test-internal-token"
ENCRYPTION_KEY = base64.b64encode(bytes(range(32))).decode()


@dataclass(frozen=True)
class Databases:
    admin_dsn: str
    shard_dsn: str
    cluster_dsn: str
    shard_name: str
    cluster_name: str


@pytest_asyncio.fixture
async def database_factory(pg_admin_dsn: str, migrated_templates: Templates) -> AsyncIterator[Callable]:
    """Create fresh (shard, cluster) database pairs, migrated unless `blank=True`; all are dropped
    at the end of the test."""
    created: list[str] = []

    async def make(blank: bool = False) -> Databases:
        suffix = uuid.uuid4().hex[:10]
        shard, cluster = f"t_shard_{suffix}", f"t_cluster_{suffix}"
        created.extend((shard, cluster))
        dsns = await migrated_templates.copy(pg_admin_dsn, cluster=[cluster], shards=[shard], blank=blank)
        return Databases(pg_admin_dsn, dsns[shard], dsns[cluster], shard, cluster)

    yield make
    if created:
        await drop_databases(pg_admin_dsn, created)


def make_settings(dbs: Databases, *, shard_index: int = 0, shard_count: int = 1,
                  internal_token: str | None = INTERNAL_TOKEN, port: int = 0,
                  max_body_bytes: int = 256 * 1024, **extra) -> ShardSettings:
    return ShardSettings(**extra,
        shard_index=shard_index, shard_count=shard_count, shard_dsn=dbs.shard_dsn,
        cluster_dsn=dbs.cluster_dsn, encryption_key=ENCRYPTION_KEY, internal_token=internal_token,
        http=HttpSettings(host="127.0.0.1", port=port, max_body_bytes=max_body_bytes),
        node_id=shard_index, pool_min=1, pool_max=5, log_level="INFO")


@dataclass
class ShardHarness:
    client: TestClient
    dbs: Databases
    settings: ShardSettings
    cluster: asyncpg.Pool
    shard: asyncpg.Pool

    async def count(self, table: str, db: str = "cluster") -> int:
        pool = self.cluster if db == "cluster" else self.shard
        return await pool.fetchval(f"SELECT count(*) FROM noetl.{table}")


async def start_harness(dbs: Databases, **settings_kwargs) -> ShardHarness:
    settings = make_settings(dbs, **settings_kwargs)
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    cluster = await create_pool(dbs.cluster_dsn, 1, 2)
    shard = await create_pool(dbs.shard_dsn, 1, 2)
    return ShardHarness(client, dbs, settings, cluster, shard)


async def stop_harness(h: ShardHarness) -> None:
    await h.cluster.close()
    await h.shard.close()
    await h.client.close()


@pytest_asyncio.fixture
async def shard_app(database_factory) -> AsyncIterator[ShardHarness]:
    """A started api-shard app on fresh databases, plus direct pools to check tables."""
    harness = await start_harness(await database_factory())
    try:
        yield harness
    finally:
        await stop_harness(harness)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
