"""Suite-wide fixtures: one embedded Postgres + NATS JetStream per test session (the same code
`make run` uses), or the servers named by NOETL_PG_DSN / NOETL_NATS_URL."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable, Iterator

import asyncpg
import msgspec
import pytest
import pytest_asyncio

from noetl_common.db import apply_migrations
from noetl_devstack.infra import Infra, InfraInfo
from noetl_devstack.postgres import drop_databases, ensure_databases

REPO_ROOT = Path(__file__).resolve().parents[1]

# Every pytest session resets its temp root, /tmp/pytest-of-<user>, to mode 0700 when it starts; an
# embedded Postgres (an unprivileged user) under a running session's tmp_path then loses its data
# directory (PANIC). A root per checkout keeps sessions of different checkouts (worktrees) apart;
# short, because Postgres' socket path lives under it (107 bytes at most).
os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", "/tmp/nt-" + hashlib.sha1(str(REPO_ROOT).encode()).hexdigest()[:6])
Path(os.environ["PYTEST_DEBUG_TEMPROOT"]).mkdir(exist_ok=True)


def infra_dir(prefix: str) -> Path:
    """A directory of its own for the session's embedded Postgres, outside pytest's temp tree (see
    PYTEST_DEBUG_TEMPROOT above): a second session in the same checkout cannot take it away."""
    return Path(tempfile.mkdtemp(prefix=prefix))


@pytest.fixture(scope="session")
def infra() -> Iterator[InfraInfo]:
    """Started once, in a temporary directory so `make run` and `make test` can run side by side."""
    import asyncio

    work = infra_dir("noetl-test-infra-")
    stack = Infra(work)
    info = asyncio.run(stack.up(shards=0))
    try:
        yield info
    finally:
        stack.down()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_admin_dsn(infra: InfraInfo) -> str:
    return infra.admin_dsn


@pytest.fixture(scope="session")
def nats_url(infra: InfraInfo) -> str:
    return infra.nats_url


class Templates(msgspec.Struct, frozen=True):
    """Databases migrated once per session, one per migration scope, that tests copy."""
    shard: str
    cluster: str

    async def copy(self, admin_dsn: str, *, cluster: list[str], shards: list[str],
                   blank: bool = False) -> dict[str, str]:
        """New databases, copies of the migrated ones (blank, unmigrated ones when asked); their DSNs
        by name."""
        return {**await ensure_databases(admin_dsn, cluster, template=None if blank else self.cluster),
                **await ensure_databases(admin_dsn, shards, template=None if blank else self.shard)}


@pytest.fixture(scope="session")
def migrated_templates(infra: InfraInfo) -> Iterator[Templates]:
    """A test's databases are copies of these (CREATE DATABASE ... TEMPLATE): about 0.3 s less per
    test than migrating each at start-up. Tests of the migrations themselves, or of the moment
    one ran (0007's p0 ends when it ran), take blank databases instead."""
    import asyncio

    async def build() -> Templates:
        tag = uuid.uuid4().hex[:10]
        made = Templates(shard=f"tmpl_{tag}_shard", cluster=f"tmpl_{tag}_cluster")
        dsns = await ensure_databases(infra.admin_dsn, [made.shard, made.cluster])
        for name, scope in ((made.shard, "shard"), (made.cluster, "cluster")):
            conn = await asyncpg.connect(dsns[name])
            try:
                await apply_migrations(conn, scope)
                # The migrations leave the catalogs full of dead rows: copying the database as
                # they leave it took several times as long here as copying it compacted.
                await conn.execute("VACUUM FULL")
            finally:
                await conn.close()
        return made

    made = asyncio.run(build())
    yield made
    asyncio.run(drop_databases(infra.admin_dsn, [made.shard, made.cluster]))  # a server of NOETL_PG_DSN stays


class FleetDatabases(msgspec.Struct, frozen=True):
    cluster_dsn: str
    shard_dsns: list[str]


@pytest_asyncio.fixture
async def fresh_databases(infra: InfraInfo, migrated_templates: Templates
                         ) -> AsyncIterator[Callable[[int], Awaitable[FleetDatabases]]]:
    """`await fresh_databases(n)`: a new, migrated cluster database and n shard databases, dropped
    after the test."""
    created: list[str] = []

    async def make(shards: int = 1) -> FleetDatabases:
        tag = uuid.uuid4().hex[:10]
        names = [f"t_{tag}_cluster", *(f"t_{tag}_shard_{i}" for i in range(shards))]
        dsns = await migrated_templates.copy(infra.admin_dsn, cluster=names[:1], shards=names[1:])
        created.extend(names)
        return FleetDatabases(cluster_dsn=dsns[names[0]], shard_dsns=[dsns[n] for n in names[1:]])

    yield make
    if created:
        await drop_databases(infra.admin_dsn, created)
