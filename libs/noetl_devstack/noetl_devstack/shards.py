"""The api-shard processes of a running local fleet, as `make run`'s control endpoint sees them:
which run, and starting or stopping one (its database is created first and kept after)."""

from __future__ import annotations

import asyncio

from noetl_common.wire.localrun import ShardProcess

from .fleet import SHARD_MODULE, FleetConfig
from .infra import shard_db
from .ports import free_port
from .postgres import ensure_databases, with_database
from .processes import ServiceSpec, Supervisor


def shard_name(index: int) -> str:
    return f"api-shard-{index}"


class LocalShards:
    """Shard processes under `supervisor`; a stopped shard's database stays, so starting it again
    serves the executions it owned."""

    def __init__(self, supervisor: Supervisor, admin_dsn: str, cfg: FleetConfig, ready_timeout: float = 60.0) -> None:
        self.supervisor = supervisor
        self.admin_dsn = admin_dsn
        self.cfg = cfg
        self.ready_timeout = ready_timeout

    def processes(self) -> list[ShardProcess]:
        found = []
        for name, (running, proc) in self.supervisor.running.items():
            if running.spec.module == SHARD_MODULE and name.startswith("api-shard-"):
                found.append(ShardProcess(index=int(name.rsplit("-", 1)[1]), url=running.spec.url,
                                          running=proc.poll() is None))
        return sorted(found, key=lambda p: p.index)

    async def start(self, index: int) -> None:
        name = shard_name(index)
        if name in self.supervisor.running:
            self.supervisor.stop(name)  # a shard process that died: replace it
        await ensure_databases(self.admin_dsn, [shard_db(index)])
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        self.supervisor.spawn(ServiceSpec(name=name, module=SHARD_MODULE, port=port, env={
            **self.cfg.secrets, "NOETL_NATS_URL": self.cfg.nats_url, **self.cfg.extra_env,
            # The shard map decides ownership; the count only seeds an empty map and must exceed the index.
            "NOETL_SHARD_INDEX": str(index), "NOETL_SHARD_COUNT": str(index + 1),
            "NOETL_SHARD_DSN": with_database(self.admin_dsn, shard_db(index)),
            "NOETL_CLUSTER_DSN": self.cfg.cluster_dsn, "NOETL_SERVER_URL": url}))
        await self.supervisor.wait_ready(name, self.ready_timeout)

    async def stop(self, index: int) -> None:
        name = shard_name(index)
        if name in self.supervisor.running:
            await asyncio.to_thread(self.supervisor.stop, name)
