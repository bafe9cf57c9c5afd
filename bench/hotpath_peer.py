"""The DBOS peer from the fleet bench's side: its virtualenv (made once), its runner subprocess
(bench/peer_dbos.py) and the line protocol to it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PEER_VENV = BENCH_DIR / ".peer-venv"
PEER_PACKAGES = ["dbos==3.4.0", "pgserver", "psycopg[binary]"]
DEFAULT_PEERS_DIR = BENCH_DIR.parent.parent / "shared" / "peers"


class PeerUnavailable(RuntimeError):
    pass


def peer_python() -> Path:
    """The peer virtualenv's interpreter, creating the venv on first use (a minute or so)."""
    python = PEER_VENV / "bin" / "python"
    marker = PEER_VENV / ".installed"
    if marker.exists() and python.exists():
        return python
    print(f"creating the DBOS peer virtualenv in {PEER_VENV} (once) ...", flush=True)
    steps = [["python3", "-m", "venv", str(PEER_VENV)],
             [str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES]]
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise PeerUnavailable(f"{' '.join(cmd[:4])} ... failed: {done.stderr.strip()[-400:]}")
    marker.touch()
    return python


class PeerRunner:
    """bench/peer_dbos.py as a long-lived subprocess: launched and warmed up once, then one command
    per workload, so each workload can be metered from outside and interleaved with the fleet."""

    def __init__(self, proc: asyncio.subprocess.Process, warm_up: dict) -> None:
        self.proc, self.warm_up = proc, warm_up

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    async def start(cls, python: Path, peers_dir: Path, sys_url: str, log: Path, timeout: float = 180) -> "PeerRunner":
        if not (peers_dir / "dbos_bench.py").exists():
            raise PeerUnavailable(f"{peers_dir}/dbos_bench.py is missing")
        stderr = open(log, "ab")
        proc = await asyncio.create_subprocess_exec(
            str(python), str(BENCH_DIR / "peer_dbos.py"), "--sys-url", sys_url, "--peers-dir", str(peers_dir),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, start_new_session=True)
        stderr.close()  # the child holds its own copy
        runner = cls(proc, {})
        try:
            runner.warm_up = await runner._reply("READY", timeout)
        except BaseException:
            await runner.stop()
            raise
        return runner

    async def _reply(self, expected: str, timeout: float) -> dict:
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            if not line:
                raise PeerUnavailable(f"peer runner exited (code {await self.proc.wait()}); see its log")
            tag, _, body = line.decode().strip().partition(" ")
            if tag == expected:
                return json.loads(body)
            if tag == "ERROR":
                raise PeerUnavailable(f"peer runner: {body}")
            # anything else is chatter from DBOS or a library on stdout

    async def run(self, command: str, timeout: float = 600) -> dict:
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()
        return await self._reply("RESULT", timeout)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            try:
                self.proc.stdin.write(b"quit\n")
                await self.proc.stdin.drain()
                await asyncio.wait_for(self.proc.wait(), 30)
            except (asyncio.TimeoutError, ConnectionError):
                self.proc.kill()
                await self.proc.wait()


def peer_versions(python: Path) -> dict:
    code = "import json, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in ('dbos', 'psycopg')}))"
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else {}


if __name__ == "__main__":
    print(peer_python(), file=sys.stderr)
