"""Start NoETL's own Python worker (`python -m noetl.worker`, unchanged, from its venv) against a
fleet's router, under the fleet's supervisor; ready once its durable consumers exist and its pool
is registered. With a trace file it runs under the reference's `tools/worker_trace.py`, which logs
every HTTP exchange it makes (method, url, status) as JSON lines."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp
import nats

from noetl_devstack.errors import StartError
from noetl_devstack.ports import free_port
from noetl_devstack.processes import ServiceSpec, Supervisor

from . import venv

STREAM = "NOETL_COMMANDS"
# Its default segments (legacy,shared,python): one durable each.
DURABLES = ("noetl_worker_pool", "noetl_worker_pool_shared", "noetl_worker_pool_python")


def spec_for(python: Path, *, name: str, router: str, nats_url: str, cwd: Path, data_dir: Path,
             trace_file: Path | None = None) -> ServiceSpec:
    entry = ["-m", "noetl.worker"]
    env = {"NATS_URL": nats_url, "NOETL_SERVER_URL": router, "NOETL_DATA_DIR": str(data_dir),
           "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "INFO"}
    if trace_file is not None:
        entry = [str(venv.reference_dir() / "tools" / "worker_trace.py")]
        env["TRACE_FILE"] = str(trace_file)
    return ServiceSpec(name=name, module="noetl.worker", port=free_port(), env=env, cwd=str(cwd),
                       argv=[str(python), *entry, "--nats-url", nats_url, "--server-url", router])


async def registered_pools(session: aiohttp.ClientSession, router: str) -> set[str] | str:
    """The pools the router lists, or why it could not list them (a fleet just started may still
    answer 503 while its router's first probes come in)."""
    async with session.get(f"{router}/api/worker/pools") as r:
        if r.status != 200:
            return f"{r.status} {(await r.text())[:300]}"
        body = await r.json()
    return {p["name"] for p in body["items"]}


async def _pools_listed(session: aiohttp.ClientSession, router: str, deadline: float) -> set[str]:
    while isinstance(listed := await registered_pools(session, router), str):
        if time.monotonic() > deadline:
            raise StartError("router", f"GET /api/worker/pools kept failing: {listed}")
        print(f"GET /api/worker/pools: {listed}; asking again", file=sys.stderr)
        await asyncio.sleep(0.2)
    return listed


async def start_noetl_worker(supervisor: Supervisor, python: Path, *, name: str, router: str, nats_url: str,
                             cwd: Path, data_dir: Path, trace_file: Path | None = None,
                             timeout: float = 90.0) -> ServiceSpec:
    """Spawn it and wait until it can take work: every durable it consumes exists (it creates them
    delivering only new messages, so a command published before would never reach it) and a pool
    it registered is listed by the router."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        before = await _pools_listed(session, router, deadline)
        spec = spec_for(python, name=name, router=router, nats_url=nats_url, cwd=cwd, data_dir=data_dir,
                        trace_file=trace_file)
        running = supervisor.spawn(spec)
        nc = await nats.connect(nats_url)
        try:
            while True:
                _, proc = supervisor.running[name]
                if proc.poll() is not None:
                    raise StartError(name, f"exited with code {proc.returncode}", Path(running.log_file))
                listed = await registered_pools(session, router)
                if await _consumers_exist(nc) and not isinstance(listed, str) and listed - before:
                    return spec
                if time.monotonic() > deadline:
                    raise StartError(name, f"not consuming and registered after {timeout:.0f}s (pools: {listed})",
                                     Path(running.log_file))
                await asyncio.sleep(0.2)
        finally:
            await nc.close()


async def _consumers_exist(nc: nats.NATS) -> bool:
    js = nc.jetstream()
    try:
        for durable in DURABLES:
            await js.consumer_info(STREAM, durable)
        return True
    except Exception:
        return False


def http_trace(trace_file: Path) -> list[dict]:
    if not trace_file.exists():
        return []
    return [json.loads(line) for line in trace_file.read_text().splitlines() if line.strip()]
