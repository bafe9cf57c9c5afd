"""A small supervisor for fleet processes: spawn `python -m <module>` with env, log to a file,
wait for /readyz, restart one that crashed (with backoff, as a StatefulSet would), stop them all
(SIGTERM to all at once, then SIGKILL). Used by `make run` and fleet tests.

Children die with the supervisor: each asks the kernel for SIGTERM when its parent goes
(PR_SET_PDEATHSIG), and with a pid file the supervisor records them for the watchdog and for
the next `make run` (see pidfile.py, watchdog.py)."""

from __future__ import annotations

import asyncio
import ctypes
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import aiohttp
import msgspec

from . import pidfile
from .errors import StartError
from .nats import stop_pid

log = logging.getLogger("noetl.devstack.supervisor")

PR_SET_PDEATHSIG = 1
RESTART_BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0  # a process that ran this long before dying starts its backoff over


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the spawning thread's process dies, so a
    SIGKILLed `make run` takes its fleet along. (Spawn from the main thread: the signal fires
    when the spawning *thread* ends.)"""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the watchdog still cleans up


class ServiceSpec(msgspec.Struct, kw_only=True):
    name: str          # e.g. api-shard-0
    module: str        # e.g. noetl_api_shard
    port: int
    env: dict[str, str] = {}
    ready_path: str = "/readyz"
    # Another program instead of `python -m <module>` (NoETL's own worker, from its own venv), and
    # its working directory.
    argv: list[str] | None = None
    cwd: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class _Pid(msgspec.Struct):
    pid: int


class _Answered(msgspec.Struct):
    """The part of a fleet service's GET /api/status that names its process."""
    process: _Pid


class Running(msgspec.Struct):
    spec: ServiceSpec
    pid: int
    log_file: str


class Restarts(msgspec.Struct):
    count: int = 0
    next_delay: float = 1.0


class Supervisor:
    def __init__(self, log_dir: Path, pid_file: Path | None = None) -> None:
        self.log_dir = log_dir
        self.pid_file = pid_file
        self.running: dict[str, tuple[Running, subprocess.Popen]] = {}
        self.restarts: dict[str, Restarts] = {}
        self._started_at: dict[str, float] = {}

    def save(self) -> None:
        if self.pid_file is not None:
            pidfile.write(self.pid_file, pidfile.PidFile(
                owner=pidfile.record("supervisor", os.getpid()),
                children=[pidfile.record(name, r.pid) for name, (r, _) in self.running.items()]))

    def spawn(self, spec: ServiceSpec) -> Running:
        # A service not written/installed yet should say so, not die in a log file.
        if spec.argv is None and (importlib.util.find_spec(spec.module) is None
                                  or importlib.util.find_spec(f"{spec.module}.__main__") is None):
            raise StartError(spec.name, f"python -m {spec.module} is not available (package or its __main__ missing)")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_file = self.log_dir / f"{spec.name}.log"
        env = {**os.environ, **spec.env, "NOETL_HTTP_HOST": "127.0.0.1", "NOETL_HTTP_PORT": str(spec.port)}
        with open(log_file, "ab") as log:
            proc = subprocess.Popen(spec.argv or [sys.executable, "-m", spec.module], env=env, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                    preexec_fn=_die_with_parent, cwd=spec.cwd)
        running = Running(spec=spec, pid=proc.pid, log_file=str(log_file))
        self.running[spec.name] = (running, proc)
        self._started_at[spec.name] = time.monotonic()
        self.save()
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
                            await self._answered_by(name, session)
                            return
                except aiohttp.ClientError:
                    pass
                except asyncio.TimeoutError:
                    pass
                if time.monotonic() > deadline:
                    raise StartError(name, f"{url} not ready after {timeout:.0f}s", Path(running.log_file))
                await asyncio.sleep(0.1)

    async def _answered_by(self, name: str, session: aiohttp.ClientSession) -> None:
        """A port may have been taken by another process between our pick and the child's bind (the
        child then exits, but the other one answers ready): when the answer's `GET /api/status`
        names a pid (every fleet service's does), it must be our child's."""
        running, proc = self.running[name]
        if running.spec.argv is not None:  # another program (NoETL's own): its pid may be a child's
            return
        async with session.get(running.spec.url + "/api/status") as resp:
            try:
                answered = msgspec.json.decode(await resp.read(), type=_Answered).process.pid
            except (msgspec.DecodeError, msgspec.ValidationError):
                return  # not a fleet service (a stand-in such as the test API): nothing to tell by
        if answered != proc.pid:
            raise StartError(name, f"port {running.spec.port} is answered by another process (pid {answered}), "
                                   f"not pid {proc.pid}", Path(running.log_file))

    def stop(self, name: str, timeout: float = 15.0) -> None:
        running, proc = self.running.pop(name)
        self.save()
        if proc.poll() is None:
            stop_pid(running.pid, timeout)
        try:
            proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass

    def stop_all(self, timeout: float = 8.0) -> None:
        """SIGTERM every process at once, wait for them together, SIGKILL what is left."""
        procs = [proc for _, proc in self.running.values()]
        self.running.clear()
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.save()  # no children left; the owner removes the file once everything else is down

    async def keep_alive(self, on_restart: Callable[[str, int], None] | None = None,
                         interval: float = 0.5) -> None:
        """Restart any process that exits on its own, after 1, 2, 4 ... 30 s (reset once one has
        run for a minute). Processes stopped through stop()/stop_all() are not ours to restart."""
        due: dict[str, float] = {}
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for name, (running, proc) in list(self.running.items()):
                if proc.poll() is None:
                    continue
                state = self.restarts.setdefault(name, Restarts())
                if name not in due:
                    if now - self._started_at.get(name, now) > STABLE_AFTER:
                        state.next_delay = 1.0
                    due[name] = now + state.next_delay
                    log.warning("%s exited with code %s; restarting in %.0fs", name, proc.returncode,
                                state.next_delay)
                    continue
                if now < due[name]:
                    continue
                del due[name]
                if self.running.get(name, (None, None))[0] is not running:
                    continue  # stopped on purpose meanwhile
                state.count += 1
                state.next_delay = min(state.next_delay * 2, RESTART_BACKOFF_MAX)
                self.spawn(running.spec)
                log.warning("%s restarted (restart %d)", name, state.count)
                if on_restart is not None:
                    on_restart(name, state.count)
