"""`make run`: embedded infrastructure, the fleet, a sample playbook; runs until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import signal
import subprocess
import sys
from importlib import resources
from pathlib import Path

import aiohttp
import msgspec
from prometheus_client import CollectorRegistry, Counter

from noetl_common.wire.localrun import RunInfo

from . import pidfile, secrets
from .control import serve_control
from .errors import StartError
from .infra import Infra, default_data_dir
from .fleet import DEV_WORKER_SLOTS, FleetConfig, fleet_specs, router_url, start_fleet
from .processes import ServiceSpec, Supervisor
from .shards import LocalShards
from .stored_map import reconcile
from .watchdog import PID_FILE, clean_up

RUN_FILE = "run.json"


async def register_sample(api_url: str) -> dict:
    content = resources.files(__package__).joinpath("sample_playbook.yaml").read_bytes()
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{api_url}/api/catalog/register",
                                json={"content": base64.b64encode(content).decode(), "resource_type": "Playbook"}) as r:
            body = await r.json()
            if r.status != 200:
                raise StartError("sample playbook", f"register answered {r.status}: {body}")
            return body


async def run_sample(api_url: str, path: str, timeout: float = 90.0) -> dict:
    """Execute the sample, follow it to a terminal status, print its result and event timeline."""
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{api_url}/api/execute", json={"path": path, "workload": {"who": "newcomer"}}) as r:
            started = await r.json()
            if r.status != 200:
                raise StartError("sample execution", f"execute answered {r.status}: {started}")
        execution_id = started["execution_id"]
        print(f"started execution {execution_id} of {path}", flush=True)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            async with session.get(f"{api_url}/api/executions/{execution_id}/status") as r:
                status = await r.json()
            if status.get("completed"):
                break
            if asyncio.get_running_loop().time() > deadline:
                raise StartError("sample execution", f"not finished after {timeout:.0f}s: {status}")
            await asyncio.sleep(0.2)
        async with session.get(f"{api_url}/api/executions/{execution_id}/events?page_size=500") as r:
            events = (await r.json())["events"]
    print(f"execution {execution_id}: {status['status']}")
    print(f"result: {status.get('result')}")
    print("timeline:")
    for e in reversed(events):  # the API answers newest first, as NoETL's does
        print(f"  {e['created_at'][11:23]}  {e['event_type']:<22} {e['node_name'] or ''}")
    return status


def write_run_info(data_dir: Path, specs: list[ServiceSpec], control: str) -> Path:
    """Tell other local tools (python -m noetl_ops, make scale) where this fleet is; written
    whole then renamed, so a reader never sees half a file."""
    info = RunInfo(pid=os.getpid(), router=router_url(specs), control=control, data_dir=str(data_dir),
                   projector=next(s.url for s in specs if s.name == "projector"))
    path = data_dir / RUN_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(msgspec.json.format(msgspec.json.encode(info)))
    tmp.replace(path)
    return path


def take_over(data_dir: Path) -> None:
    """Refuse to run beside a live `make run` on the same data; stop what a dead one left."""
    previous = pidfile.read(data_dir / PID_FILE)
    if previous is not None and previous.owner.pid != os.getpid() and pidfile.is_same(previous.owner):
        raise StartError("make run", f"another make run (pid {previous.owner.pid}) is using {data_dir}; "
                                     "stop it first (Ctrl-C in its terminal, or kill it)")
    if previous is not None:
        stopped = clean_up(data_dir)
        if stopped:
            print(f"stopped what a previous make run left: {', '.join(stopped)}", flush=True)


def start_watchdog(data_dir: Path) -> subprocess.Popen:
    """In a session of its own, so neither Ctrl-C nor our death reaches it."""
    log = open(data_dir / "logs" / "watchdog.log", "ab")
    with log:
        return subprocess.Popen([sys.executable, "-m", "noetl_devstack.watchdog", str(data_dir)], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def external_worker_hint(api: str, nats_url: str) -> str:
    """What to start when the fleet has no worker of its own (`--workers 0`)."""
    return ("no worker of the fleet's own (--workers 0): start one against the router, e.g. NoETL's\n"
            f"  NATS_URL={nats_url} NOETL_SERVER_URL={api} python -m noetl.worker\n"
            f"or the fleet's: NOETL_NATS_URL={nats_url} NOETL_SERVER_URL={api} python -m noetl_worker")


async def run(shards: int, data_dir: Path, workers: int = 1) -> int:
    infra = Infra(data_dir)
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor(data_dir / "logs", pid_file=data_dir / PID_FILE)
    registry = CollectorRegistry()
    restarts = Counter("noetl_devstack_restarts_total", "Fleet processes restarted after they exited on their own",
                       ["process"], registry=registry)
    control = keeper = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: the terminal closed
        loop.add_signal_handler(sig, stop.set)
    try:
        take_over(data_dir)
        supervisor.save()  # the pid file names us before anything starts, for the watchdog
        start_watchdog(data_dir)
        print(f"starting embedded infrastructure under {data_dir} ...", flush=True)
        info = await infra.up(shards)
        print(f"  postgres: {info.admin_dsn} ({info.pg_mode}, {info.pg_durability})\n  nats:     {info.nats_url}",
              flush=True)
        dev_secrets = secrets.load_or_create(data_dir / "secrets.json")
        slots = os.environ.get("WORKER_MAX_CONCURRENT", str(DEV_WORKER_SLOTS))
        cfg = FleetConfig(cluster_dsn=info.cluster_dsn(), shard_dsns=info.shard_dsns(shards),
                          nats_url=info.nats_url, secrets=dev_secrets, workers=workers,
                          extra_env={"WORKER_MAX_CONCURRENT": slots})
        specs = fleet_specs(cfg)
        await start_fleet(supervisor, specs)
        for spec in specs:
            print(f"  {spec.name}: {spec.url}  (metrics {spec.url}/metrics, log {data_dir}/logs/{spec.name}.log)")
        # A process that dies is restarted with backoff, as Kubernetes would.
        keeper = asyncio.create_task(supervisor.keep_alive(
            lambda name, _count: restarts.labels(process=name).inc()), name="keep-alive")
        # `make scale` asks this process to start or stop shards, so they are ours to stop on Ctrl-C.
        local_shards = LocalShards(supervisor, info.admin_dsn, cfg)
        async with aiohttp.ClientSession() as session:
            await reconcile(session, next(s.url for s in specs if s.name == "api-shard-0"),
                            dev_secrets["NOETL_INTERNAL_API_TOKEN"], shards, local_shards,
                            lambda line: print(f"note: {line}", flush=True))
        control, control_url = await serve_control(local_shards, dev_secrets["NOETL_INTERNAL_API_TOKEN"], registry)
        write_run_info(data_dir, specs, control_url)
        api = router_url(specs)
        print(f"  control: {control_url}  (make scale SHARDS=n; {data_dir / RUN_FILE}; restarts at /metrics)")
        print(f"router: {api}", flush=True)
        registered = await register_sample(api)
        print(f"registered sample playbook {registered['path']} version {registered['version']}")
        if workers:
            await run_sample(api, registered["path"])
        else:  # nothing would run it: the external worker is the user's to start
            print(external_worker_hint(api, info.nats_url), flush=True)
        print("fleet is up; press Ctrl-C to stop everything", flush=True)
        await stop.wait()
        return 0
    except StartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping ...", flush=True)
        (data_dir / RUN_FILE).unlink(missing_ok=True)
        if keeper is not None:
            keeper.cancel()
        if control is not None:
            await control.cleanup()
        supervisor.stop_all()
        infra.down()
        (data_dir / PID_FILE).unlink(missing_ok=True)  # last: until then the watchdog would clean up
        print("stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="noetl_devstack.run", description=__doc__)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=1,
                        help="the fleet's own workers; 0 for none, to run an external one (NoETL's)")
    args = parser.parse_args(argv)
    if args.shards < 1:
        parser.error("--shards must be >= 1")
    if args.workers < 0:
        parser.error("--workers must be >= 0")
    return asyncio.run(run(args.shards, args.data_dir.resolve() if args.data_dir else default_data_dir(),
                           args.workers))


if __name__ == "__main__":
    sys.exit(main())
