"""`make run`: embedded infrastructure, the fleet, a sample playbook; runs until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import base64
import signal
import sys
from importlib import resources
from pathlib import Path

import aiohttp

from . import secrets
from .errors import StartError
from .infra import Infra, InfraInfo, default_data_dir
from .ports import free_port
from .processes import ServiceSpec, Supervisor


def fleet_specs(info: InfraInfo, shards: int, dev_secrets: dict[str, str]) -> list[ServiceSpec]:
    """What `make run` starts; later services join this list."""
    cluster = info.cluster_dsn()
    return [
        ServiceSpec(name=f"api-shard-{i}", module="noetl_api_shard", port=free_port(), env={
            "NOETL_SHARD_INDEX": str(i), "NOETL_SHARD_COUNT": str(shards), "NOETL_SHARD_DSN": dsn,
            "NOETL_CLUSTER_DSN": cluster, "NOETL_NATS_URL": info.nats_url, **dev_secrets})
        for i, dsn in enumerate(info.shard_dsns(shards))
    ]


async def register_sample(api_url: str) -> dict:
    content = resources.files(__package__).joinpath("sample_playbook.yaml").read_bytes()
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{api_url}/api/catalog/register",
                                json={"content": base64.b64encode(content).decode(), "resource_type": "Playbook"}) as r:
            body = await r.json()
            if r.status != 200:
                raise StartError("sample playbook", f"register answered {r.status}: {body}")
            return body


async def run(shards: int, data_dir: Path) -> int:
    infra = Infra(data_dir)
    supervisor = Supervisor(data_dir / "logs")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        print(f"starting embedded infrastructure under {data_dir} ...", flush=True)
        info = await infra.up(shards)
        print(f"  postgres: {info.admin_dsn} ({info.pg_mode})\n  nats:     {info.nats_url}", flush=True)
        dev_secrets = secrets.load_or_create(data_dir / "secrets.json")
        specs = fleet_specs(info, shards, dev_secrets)
        for spec in specs:
            supervisor.spawn(spec)
        await asyncio.gather(*(supervisor.wait_ready(s.name) for s in specs))
        for spec in specs:
            print(f"  {spec.name}: {spec.url}  (metrics {spec.url}/metrics, log {data_dir}/logs/{spec.name}.log)")
        api = specs[0].url
        registered = await register_sample(api)
        print(f"registered sample playbook {registered['path']} version {registered['version']}")
        print(f"api: {api}", flush=True)
        print("fleet is up; press Ctrl-C to stop everything", flush=True)
        await stop.wait()
        return 0
    except StartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping ...", flush=True)
        supervisor.stop_all()
        infra.down()
        print("stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="noetl_devstack.run", description=__doc__)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.shards < 1:
        parser.error("--shards must be >= 1")
    return asyncio.run(run(args.shards, args.data_dir.resolve() if args.data_dir else default_data_dir()))


if __name__ == "__main__":
    sys.exit(main())
