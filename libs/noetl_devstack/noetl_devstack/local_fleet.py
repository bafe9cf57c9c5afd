"""One fleet starter for tests and benches: the whole sharded fleet as `make run` starts it
(shards with their own databases, router, publisher, projector, workers) on an embedded Postgres +
NATS of its own under a new temporary directory, so the JetStream streams hold its messages only.

`shard_servers=True` gives each shard's database a Postgres server of its own (what the
StatefulSet does in production) instead of one embedded server holding every database; the
cluster database stays on the first server."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import msgspec

from . import secrets
from .fleet import FleetConfig, fleet_specs, router_url, start_fleet
from .infra import Infra, shard_db
from .postgres import EmbeddedPostgres, durability_of, ensure_databases, postmaster_pid
from .processes import ServiceSpec, Supervisor


def discard_state(work: Path) -> None:
    """Remove what a stopped temporary fleet leaves under `work` (its Postgres and NATS data, some
    300 MB per fleet, which a test run of many fleets otherwise piles up until the disk is full);
    its process logs stay, since they are what a failure is read from."""
    for entry in work.iterdir() if work.is_dir() else ():
        if entry.name == "logs":
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


class LiveFleet(msgspec.Struct):
    router: str
    specs: list[ServiceSpec]
    admin_dsn: str
    shard_dsns: list[str]
    token: str
    logs: Path
    supervisor: Any  # the fleet's processes, for the crash tests and the benches' cgroups
    work: Path = Path()
    # Postmaster pid of the server every database lives on, and of each shard's own server
    # (empty unless shard_servers); None for a server this fleet did not start.
    postgres_pid: int | None = None
    shard_postgres_pids: list[int | None] = []
    nats_pid: int | None = None

    def spec(self, name: str) -> ServiceSpec:
        return next(s for s in self.specs if s.name == name)

    def url_of(self, name: str) -> str:
        return self.spec(name).url

    def pid_of(self, name: str) -> int:
        return int(self.supervisor.running[name][0].pid)


@asynccontextmanager
async def own_fleet(prefix: str, shards: int, *, workers: int = 2, extra_env: dict[str, str] | None = None,
                    shard_servers: bool = False) -> AsyncIterator[LiveFleet]:
    """A fleet started as `make run` starts it under a new temporary directory (`prefix`);
    stopped with everything it started (processes, Postgres servers, NATS) on exit."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    infra = Infra(work)
    supervisor = Supervisor(work / "logs")
    servers: list[EmbeddedPostgres] = []
    try:
        info = await infra.up(0 if shard_servers else shards)
        if shard_servers:
            durability = durability_of(infra.env)
            servers = [EmbeddedPostgres(work / f"pg-shard-{i}", mode=info.pg_mode if info.pg_mode != "external"
                                        else None, durability=durability) for i in range(shards)]
            admins = await asyncio.gather(*(asyncio.to_thread(pg.start) for pg in servers))
            shard_dsns = [(await ensure_databases(a, [shard_db(i)]))[shard_db(i)] for i, a in enumerate(admins)]
        else:
            shard_dsns = info.shard_dsns(shards)
        dev_secrets = secrets.load_or_create(work / "secrets.json")
        specs = fleet_specs(FleetConfig(cluster_dsn=info.cluster_dsn(), shard_dsns=shard_dsns,
                                        nats_url=info.nats_url, secrets=dev_secrets, workers=workers,
                                        extra_env=extra_env or {}))
        await start_fleet(supervisor, specs)
        yield LiveFleet(router=router_url(specs), specs=specs, admin_dsn=info.admin_dsn, shard_dsns=shard_dsns,
                        token=dev_secrets["NOETL_INTERNAL_API_TOKEN"], logs=work / "logs", supervisor=supervisor,
                        work=work, postgres_pid=postmaster_pid(work / "pg", info.pg_mode),
                        shard_postgres_pids=[postmaster_pid(pg.data_dir, pg.mode) for pg in servers],
                        nats_pid=info.nats_pid)
    finally:
        supervisor.stop_all()
        for pg in servers:
            await asyncio.to_thread(pg.stop)
        infra.down()
        discard_state(work)
