"""The hot-path bench's in-run peers (DBOS, Restate) from the fleet bench's side: each installs itself
once into bench/.peers/ (bench/peer_install.py), runs as a long-lived runner subprocess in its own
virtualenv (bench/peer_dbos.py, bench/peer_restate.py) and answers one command per workload over a
line protocol, so each workload can be metered from outside and interleaved with the fleet."""

from __future__ import annotations

import asyncio
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .peer_install import PeerUnavailable, ensure_npm, ensure_venv, install_seconds

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_PEERS_DIR = BENCH_DIR.parent.parent / "shared" / "peers"

DBOS_PACKAGES = ["dbos==3.4.0", "pgserver", "psycopg[binary]"]
RESTATE_PACKAGES = ["restate-sdk==1.3.0", "hypercorn", "httpx"]
RESTATE_SERVER = "@restatedev/restate-server@1.7.12"
RESTATE_BINARY = "node_modules/@restatedev/restate-server-linux-x64/bin/restate-server"

__all__ = ["PeerLaunch", "PeerRunner", "PeerUnavailable", "DEFAULT_PEERS_DIR", "launch_dbos", "launch_restate"]


class PeerRunner:
    """A runner subprocess: READY {...} once warmed up, then `RESULT {...}` per command line."""

    def __init__(self, proc: asyncio.subprocess.Process, ready: dict) -> None:
        self.proc, self.ready = proc, ready

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    async def start(cls, argv: list[str], log: Path, timeout: float = 300) -> "PeerRunner":
        log.parent.mkdir(parents=True, exist_ok=True)
        stderr = open(log, "ab")
        proc = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                    stderr=stderr, start_new_session=True)
        stderr.close()  # the child holds its own copy
        runner = cls(proc, {})
        try:
            runner.ready = await runner._reply("READY", timeout)
        except BaseException:
            await runner.stop()
            raise
        return runner

    async def _reply(self, expected: str, timeout: float) -> dict:
        assert self.proc.stdout is not None
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            if not line:
                raise PeerUnavailable(f"peer runner exited (code {await self.proc.wait()}); see its log")
            tag, _, body = line.decode().strip().partition(" ")
            if tag == expected:
                return json.loads(body)
            if tag == "ERROR":
                raise PeerUnavailable(f"peer runner: {body}")
            # anything else is chatter from the peer or a library on stdout

    async def run(self, command: str, timeout: float = 900) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()
        return await self._reply("RESULT", timeout)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(b"quit\n")
                await self.proc.stdin.drain()
                await asyncio.wait_for(self.proc.wait(), 60)
            except (asyncio.TimeoutError, ConnectionError):
                self.proc.kill()
                await self.proc.wait()


@dataclass(frozen=True)
class PeerLaunch:
    """What starting a peer gives the bench."""
    runner: PeerRunner
    info: dict  # versions, install and warm-up times, the runner's READY payload


def _versions(python: Path, packages: tuple[str, ...]) -> dict:
    code = f"import json, importlib.metadata as m; print(json.dumps({{p: m.version(p) for p in {packages!r}}}))"
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else {}


def _need(peers_dir: Path, script: str) -> None:
    if not (peers_dir / script).exists():
        raise PeerUnavailable(f"{peers_dir}/{script} is missing")


async def launch_dbos(peers_dir: Path, sys_url: str, work: Path) -> PeerLaunch:
    """DBOS Transact on a system database of the fleet's Postgres server."""
    _need(peers_dir, "dbos_bench.py")
    python = await asyncio.to_thread(ensure_venv, "dbos", DBOS_PACKAGES)
    runner = await PeerRunner.start([str(python), str(BENCH_DIR / "peer_dbos.py"), "--sys-url", sys_url,
                                     "--peers-dir", str(peers_dir)], work / "logs" / "peer-dbos.log")
    return PeerLaunch(runner, {"versions": await asyncio.to_thread(_versions, python, ("dbos", "psycopg")),
                               "install_s": install_seconds(python.parents[1]), **runner.ready})


async def launch_restate(peers_dir: Path, work: Path) -> PeerLaunch:
    """restate-server (npm) with restate_bench.py's services on a Hypercorn endpoint process."""
    _need(peers_dir, "restate_bench.py")
    python = await asyncio.to_thread(ensure_venv, "restate", RESTATE_PACKAGES)
    server_dir = await asyncio.to_thread(ensure_npm, "restate-server", RESTATE_SERVER)
    data = work / "restate"
    data.mkdir(parents=True, exist_ok=True)
    runner = await PeerRunner.start([str(python), str(BENCH_DIR / "peer_restate.py"),
                                     "--restate-server", str(server_dir / RESTATE_BINARY),
                                     "--peers-dir", str(peers_dir), "--work", str(data)],
                                    work / "logs" / "peer-restate.log")
    versions = await asyncio.to_thread(_versions, python, ("restate-sdk", "hypercorn", "httpx"))
    versions["restate-server"] = runner.ready.get("version", {}).get("version")
    ready = {k: v for k, v in runner.ready.items() if k != "version"}
    return PeerLaunch(runner, {"versions": versions, "endpoint": "subprocess", "uses_postgres": False,
                               "install_s": {"python": install_seconds(python.parents[1]),
                                             "npm": install_seconds(server_dir)}, **ready})
