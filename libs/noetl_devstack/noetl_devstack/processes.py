"""A small supervisor for fleet processes: spawn `python -m <module>` with env, log to a file,
wait for /readyz, stop them all (SIGTERM, then SIGKILL). Used by `make run` and fleet tests."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import msgspec

from .errors import StartError
from .nats import stop_pid


class ServiceSpec(msgspec.Struct, kw_only=True):
    name: str          # e.g. api-shard-0
    module: str        # e.g. noetl_api_shard
    port: int
    env: dict[str, str] = {}
    ready_path: str = "/readyz"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Running(msgspec.Struct):
    spec: ServiceSpec
    pid: int
    log_file: str


class Supervisor:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: dict[str, tuple[Running, subprocess.Popen]] = {}

    def spawn(self, spec: ServiceSpec) -> Running:
        # A service not written/installed yet should say so, not die in a log file.
        if importlib.util.find_spec(spec.module) is None or importlib.util.find_spec(f"{spec.module}.__main__") is None:
            raise StartError(spec.name, f"python -m {spec.module} is not available (package or its __main__ missing)")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_file = self.log_dir / f"{spec.name}.log"
        env = {**os.environ, **spec.env, "NOETL_HTTP_HOST": "127.0.0.1", "NOETL_HTTP_PORT": str(spec.port)}
        with open(log_file, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", spec.module], env=env, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        running = Running(spec=spec, pid=proc.pid, log_file=str(log_file))
        self.running[spec.name] = (running, proc)
        return running

    async def wait_ready(self, name: str, timeout: float = 60.0) -> None:
        running, proc = self.running[name]
        url = running.spec.url + running.spec.ready_path
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while True:
                if proc.poll() is not None:
                    raise StartError(name, f"exited with code {proc.returncode}", Path(running.log_file))
                try:
                    async with session.get(url) as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                except asyncio.TimeoutError:
                    pass
                if time.monotonic() > deadline:
                    raise StartError(name, f"{url} not ready after {timeout:.0f}s", Path(running.log_file))
                await asyncio.sleep(0.1)

    def stop(self, name: str, timeout: float = 15.0) -> None:
        running, proc = self.running.pop(name)
        if proc.poll() is None:
            stop_pid(running.pid, timeout)
        try:
            proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass

    def stop_all(self) -> None:
        for name in reversed(list(self.running)):
            self.stop(name)
