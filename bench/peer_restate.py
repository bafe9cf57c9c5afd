"""Restate peer for the hot-path bench; runs in its bench-only virtualenv (bench/.peers/restate).

Uses the services of ../shared/peers/restate_bench.py (imported, not copied): restate-server (single
node, its default configuration and storage under --work) and the SDK endpoint as its own Hypercorn
process (restate_bench's `--endpoint subprocess`), registered through the admin API. Speaks the
line protocol of bench/peer_dbos.py on stdin/stdout:
    fanout <total> <in_flight>  ->  RESULT {...}   (lanes: each starts its next workflow when one ends)
    loop <n>                    ->  RESULT {...}
    quit
READY carries the warm-up time and the server's durability settings (from --dump-config).
Nothing from the fleet is imported: this file sees only the peer virtualenv."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import tomllib
import uuid
from datetime import datetime
from pathlib import Path

DURABILITY_KEYS = {  # where a record is acknowledged: the log-server's RocksDB WAL, fsynced or not
    "bifrost.default-provider": ("bifrost", "default-provider"),
    "default-replication": ("default-replication",),
    "log-server.rocksdb-disable-wal-fsync": ("log-server", "rocksdb-disable-wal-fsync"),
    "bifrost.local.rocksdb-disable-wal": ("bifrost", "local", "rocksdb-disable-wal"),
    "bifrost.local.rocksdb-disable-wal-fsync": ("bifrost", "local", "rocksdb-disable-wal-fsync"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def durability(server: str, env: dict) -> dict:
    """The effective settings (defaults plus environment) as the server itself reports them."""
    text = subprocess.run([server, "--dump-config"], capture_output=True, text=True, env=env, check=True).stdout
    config = tomllib.loads(text)
    out: dict = {}
    for name, path in DURABILITY_KEYS.items():
        node = config
        for part in path:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        out[name] = node if node != {} else None
    provider = out["bifrost.default-provider"]
    fsync_off = out["log-server.rocksdb-disable-wal-fsync"] if provider == "replicated" \
        else (out["bifrost.local.rocksdb-disable-wal"] or out["bifrost.local.rocksdb-disable-wal-fsync"])
    out["durable"] = fsync_off is False
    out["note"] = (f"a step's journal entry is acknowledged once appended to the {provider} loglet, whose "
                   f"RocksDB WAL is {'NOT ' if fsync_off else ''}fsynced per write batch (server defaults)")
    return out


def stamp(value) -> float:
    """Seconds from one of the introspection SQL's timestamps (RFC 3339 text or epoch milliseconds)."""
    if isinstance(value, (int, float)):
        return value / 1000
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def ms(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000, 2)


class Restate:
    def __init__(self, server: str, peers_dir: Path, work: Path) -> None:
        self.server_bin, self.peers_dir, self.work = server, peers_dir, work
        self.ports = {name: free_port() for name in ("ingress", "admin", "fabric", "endpoint")}
        self.env = dict(os.environ, RESTATE_DISABLE_TELEMETRY="true", RESTATE_LOG_FILTER="warn",
                        RESTATE_INGRESS__BIND_ADDRESS=f"127.0.0.1:{self.ports['ingress']}",
                        RESTATE_ADMIN__BIND_ADDRESS=f"127.0.0.1:{self.ports['admin']}",
                        RESTATE_BIND_ADDRESS=f"127.0.0.1:{self.ports['fabric']}")
        self.admin = f"http://127.0.0.1:{self.ports['admin']}"
        self.ingress = f"http://127.0.0.1:{self.ports['ingress']}"
        self.procs: list[subprocess.Popen] = []

    def start_processes(self) -> None:
        import restate_bench

        data = self.work / "restate-data"
        data.mkdir(parents=True, exist_ok=True)
        log = open(self.work / "restate-server.log", "w")
        self.procs.append(subprocess.Popen([self.server_bin, "--no-logo", "--base-dir", str(data)], env=self.env,
                                           cwd=data, stdout=log, stderr=subprocess.STDOUT))
        hc = restate_bench.hypercorn_config(self.ports["endpoint"])
        cfg = self.work / "hypercorn.toml"
        cfg.write_text(f'bind = "{hc.bind[0]}"\nh2_max_concurrent_streams = {hc.h2_max_concurrent_streams}\n'
                       f'keep_alive_max_requests = {hc.keep_alive_max_requests}\n'
                       f'keep_alive_timeout = {hc.keep_alive_timeout}\ngraceful_timeout = {hc.graceful_timeout}\n'
                       'workers = 1\n')
        self.procs.append(subprocess.Popen([sys.executable, "-m", "hypercorn", "--config", str(cfg), "restate_bench:app"],
                                           cwd=self.peers_dir, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    async def connect(self, client) -> dict:
        import restate_bench

        await restate_bench.wait_http(client, f"{self.admin}/health", "restate admin")
        await restate_bench.wait_http(client, f"{self.ingress}/restate/health", "restate ingress")
        deadline = time.monotonic() + 60
        while True:
            try:
                r = await client.post(f"{self.admin}/deployments",
                                      json={"uri": f"http://127.0.0.1:{self.ports['endpoint']}", "force": True})
                if r.status_code in (200, 201):
                    break
                err = f"HTTP {r.status_code} {r.text[:300]}"
            except Exception as exc:  # noqa: BLE001  (the endpoint may not listen yet)
                err = repr(exc)
            if time.monotonic() > deadline:
                raise RuntimeError(f"deployment registration failed: {err}")
            await asyncio.sleep(0.5)
        return (await client.get(f"{self.admin}/version")).json()

    async def call(self, client, service: str, n: int, key: str | None = None):
        key = key or f"{service.lower()}-{uuid.uuid4().hex}"
        r = await client.post(f"{self.ingress}/{service}/{key}/run", json=n)
        if r.status_code != 200:
            raise RuntimeError(f"{service} HTTP {r.status_code}: {r.text[:300]}")
        return r.json()

    async def fanout(self, client, total: int, in_flight: int) -> dict:
        latencies: list[float] = []
        todo = iter(range(total))
        prefix = uuid.uuid4().hex[:12]

        async def lane() -> None:
            for i in todo:
                t = time.perf_counter()
                out = await self.call(client, "ThreeSteps", i, key=f"{prefix}-{i}")
                latencies.append(time.perf_counter() - t)
                if out.get("i") != i:
                    raise RuntimeError(f"bad result {out} for {i}")

        t0 = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(in_flight)))
        wall = time.perf_counter() - t0
        server = await self.server_latencies(client, prefix, total)
        return {"executions": total, "in_flight": in_flight, "wall_s": round(wall, 3),
                "wf_per_s": round(total / wall, 2), "steps_per_s": round(3 * total / wall, 2),
                # Not the fleet's kind of server latency: Restate stamps created_at once the
                # invocation reaches its partition, after the ingress and log queueing under load.
                "server_p50_ms": None, "server_p99_ms": None,
                "invocation_p50_ms": ms(server, 50), "invocation_p99_ms": ms(server, 99),
                "client_p50_ms": ms(latencies, 50), "client_p99_ms": ms(latencies, 99), "start_pattern": "lanes"}

    async def server_latencies(self, client, prefix: str, total: int) -> list[float]:
        """created_at -> completed_at of each invocation, as the server recorded them (its introspection SQL)."""
        r = await client.post(f"{self.admin}/query", headers={"accept": "application/json"}, json={
            "query": "SELECT created_at, completed_at FROM sys_invocation WHERE target_service_name = 'ThreeSteps' "
                     f"AND target_service_key LIKE '{prefix}-%' AND completed_at IS NOT NULL"})
        r.raise_for_status()
        rows = r.json().get("rows", [])
        if len(rows) != total:
            raise RuntimeError(f"{len(rows)} of {total} invocations listed as completed")
        return [(stamp(row["completed_at"]) - stamp(row["created_at"])) for row in rows]

    async def loop(self, client, n: int) -> dict:
        t = time.perf_counter()
        done = await self.call(client, "Loop", n)
        wall = time.perf_counter() - t
        if done != n:
            raise RuntimeError(f"Loop returned {done} for n={n}")
        return {"n": n, "wall_s": round(wall, 3), "steps_per_s": round(n / wall, 2), "truncated": False}

    def stop(self) -> None:
        for proc in self.procs:  # the server first: it holds HTTP/2 connections to the endpoint
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def serve(restate: Restate, lines: asyncio.Queue) -> None:
    import httpx

    limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(600.0)) as client:
        t = time.perf_counter()
        version = await restate.connect(client)
        deadline = time.monotonic() + 30
        while True:  # the first call also waits until the new deployment is visible to the ingress
            try:
                await restate.call(client, "ThreeSteps", 0)
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.3)
        await restate.fanout(client, 100, 50)
        await restate.loop(client, 200)
        print("READY " + json.dumps({"warm_up_s": round(time.perf_counter() - t, 2), "version": version,
                                     "durability": durability(restate.server_bin, restate.env)}), flush=True)
        while (line := await lines.get()) != "quit":
            words = line.split()
            try:
                if words[0] == "fanout":
                    result = await restate.fanout(client, int(words[1]), int(words[2]))
                elif words[0] == "loop":
                    result = await restate.loop(client, int(words[1]))
                else:
                    raise ValueError(f"unknown command {line!r}")
                print("RESULT " + json.dumps(result), flush=True)
            except Exception as exc:  # noqa: BLE001  (the parent reports it; the runner stays usable)
                print("ERROR " + json.dumps({"command": line, "error": repr(exc)}), flush=True)


async def main_async(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(args.peers_dir))
    restate = Restate(str(Path(args.restate_server).resolve()), args.peers_dir.resolve(), args.work.resolve())
    lines: asyncio.Queue = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def read_stdin() -> None:
        for line in sys.stdin:
            if line.strip():
                loop.call_soon_threadsafe(lines.put_nowait, line.strip())
        loop.call_soon_threadsafe(lines.put_nowait, "quit")

    # A daemon thread: blocked on stdin after `quit`, it must not keep the process from exiting.
    threading.Thread(target=read_stdin, daemon=True).start()
    restate.start_processes()
    try:
        await serve(restate, lines)
    finally:
        restate.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--restate-server", required=True, help="the restate-server binary")
    ap.add_argument("--peers-dir", type=Path, required=True, help="where restate_bench.py is")
    ap.add_argument("--work", type=Path, required=True, help="a directory for its data and logs")
    args = ap.parse_args()
    try:
        asyncio.run(main_async(args))
    except Exception as exc:  # noqa: BLE001
        print("ERROR " + json.dumps({"command": "start", "error": repr(exc)}), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
