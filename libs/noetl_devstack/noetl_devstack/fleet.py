"""The processes of a local fleet, as data: `make run` and the fleet tests start the same list."""

from __future__ import annotations

import asyncio

import aiohttp
import msgspec

from noetl_common.config import LOOPBACK_NETWORKS, TRUSTED_NETWORKS_VAR

from .errors import StartError
from .ports import free_port
from .infra import shard_db
from .postgres import ensure_databases
from .processes import ServiceSpec, Supervisor

ROUTER = "router"


# `make run` has one worker for all steps: it takes up to this many at once (the worker's own
# default is NoETL's 4); WORKER_MAX_CONCURRENT in make run's environment chooses otherwise.
DEV_WORKER_SLOTS = 16


class FleetConfig(msgspec.Struct, kw_only=True):
    cluster_dsn: str
    shard_dsns: list[str]
    nats_url: str
    secrets: dict[str, str]        # NOETL_ENCRYPTION_KEY, NOETL_INTERNAL_API_TOKEN
    workers: int = 1
    extra_env: dict[str, str] = {}
    # The workers' working directory (None: this process's): where a playbook's relative paths land.
    worker_cwd: str | None = None


def fleet_specs(cfg: FleetConfig) -> list[ServiceSpec]:
    count = len(cfg.shard_dsns)
    shard_ports = [free_port() for _ in range(count)]
    shard_urls = [f"http://127.0.0.1:{p}" for p in shard_ports]
    # Everything runs on this machine: its own callers (NoETL's worker, UI and CLI, which send no
    # token) are trusted with secrets and SQL; extra_env may narrow that (noetl_common.trust).
    common = {**cfg.secrets, "NOETL_NATS_URL": cfg.nats_url, TRUSTED_NETWORKS_VAR: LOOPBACK_NETWORKS,
              **cfg.extra_env}
    specs = [ServiceSpec(name=f"api-shard-{i}", module="noetl_api_shard", port=shard_ports[i], env={
        **common, "NOETL_SHARD_INDEX": str(i), "NOETL_SHARD_COUNT": str(count), "NOETL_SHARD_DSN": dsn,
        # Notifications carry the owning shard's URL, so workers reach it without a router.
        "NOETL_CLUSTER_DSN": cfg.cluster_dsn, "NOETL_SERVER_URL": shard_urls[i]})
        for i, dsn in enumerate(cfg.shard_dsns)]
    router_port = free_port()
    specs.append(ServiceSpec(name=ROUTER, module="noetl_router", port=router_port, env={
        **common, "NOETL_SHARD_URLS": ",".join(shard_urls), "NOETL_ROUTER_PROBE_INTERVAL_SECONDS": "0.5"}))
    specs.append(ServiceSpec(name="outbox-publisher", module="noetl_outbox_publisher", port=free_port(), env={
        **common, "NOETL_SHARD_URLS": ",".join(shard_urls), "NOETL_OUTBOX_WAIT_MS": "1000"}))
    specs.append(ServiceSpec(name="projector", module="noetl_projector", port=free_port(), env={
        **common, "NOETL_SHARD_URLS": ",".join(shard_urls)}))
    # Workers talk to the router like any NoETL worker; notifications name the owning shard directly.
    specs.extend(ServiceSpec(name=f"worker-{w}", module="noetl_worker", port=free_port(), env={
        **common, "NOETL_SERVER_URL": f"http://127.0.0.1:{router_port}", "WORKER_ID": f"worker-{w}"},
        cwd=cfg.worker_cwd) for w in range(cfg.workers))
    return specs


def router_url(specs: list[ServiceSpec]) -> str:
    return next(s.url for s in specs if s.name == ROUTER)


async def start_fleet(supervisor: Supervisor, specs: list[ServiceSpec], timeout: float = 60.0) -> None:
    """Spawn every process, wait until each is ready, then until the router counts every shard
    healthy (its own readiness needs just one), so the first routed request finds all shards."""
    for spec in specs:
        supervisor.spawn(spec)
    await asyncio.gather(*(supervisor.wait_ready(s.name, timeout) for s in specs))
    router = next((s for s in specs if s.name == ROUTER), None)
    if router is None:
        return
    shards = sum(1 for s in specs if s.module == "noetl_api_shard")
    wanted = [f'noetl_router_upstream_healthy{{shard="{i}"}} 1.0' for i in range(shards)]
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(f"{router.url}/metrics") as resp:
                text = await resp.text()
            if all(line in text for line in wanted):
                return
            if asyncio.get_running_loop().time() > deadline:
                raise StartError(ROUTER, f"not every shard is healthy after {timeout:.0f}s")
            await asyncio.sleep(0.1)


SHARD_MODULE = "noetl_api_shard"


def shard_specs(specs: list[ServiceSpec]) -> list[ServiceSpec]:
    return sorted((s for s in specs if s.module == SHARD_MODULE), key=lambda s: int(s.env["NOETL_SHARD_INDEX"]))


async def add_shard(supervisor: Supervisor, specs: list[ServiceSpec], *, admin_dsn: str,
                    database: str | None = None, timeout: float = 60.0) -> ServiceSpec:
    """Add the next shard to a running local fleet: create its database, spawn `api-shard-N`
    with the same environment as the others (its own index, database and URL), wait until it is
    ready, and append its spec to `specs` (so stopping the fleet stops it too). It records its URL
    in the cluster database at start; the router, publisher and projector find it there. It takes
    executions only once an epoch including it is committed
    (`POST /api/internal/shard-map/epochs`), which is the caller's next step."""
    existing = shard_specs(specs)
    if not existing:
        raise StartError("api-shard", "the fleet has no shard to copy the environment from")
    index = int(existing[-1].env["NOETL_SHARD_INDEX"]) + 1
    name = database or shard_db(index)
    dsn = (await ensure_databases(admin_dsn, [name]))[name]
    port = free_port()
    spec = ServiceSpec(name=f"api-shard-{index}", module=SHARD_MODULE, port=port, env={
        **existing[0].env, "NOETL_SHARD_INDEX": str(index), "NOETL_SHARD_COUNT": str(index + 1),
        "NOETL_SHARD_DSN": dsn, "NOETL_SERVER_URL": f"http://127.0.0.1:{port}"})
    supervisor.spawn(spec)
    specs.append(spec)
    await supervisor.wait_ready(spec.name, timeout)
    return spec
