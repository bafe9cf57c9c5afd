"""Free loopback ports: never assume 5432/4222 are free."""

from __future__ import annotations

import random
import socket
from pathlib import Path

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 10000


def _ephemeral_low() -> int | None:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def free_port() -> int:
    """A port nothing listens on, picked at random below the kernel's ephemeral range when there is
    room there. Inside that range (bind(0)'s choice) the port, free once we close our probe socket,
    can be handed to the next bind(0) of another fleet starting beside this one, or to an outgoing
    connection, before our child binds it: two test workers starting fleets at once did collide."""
    low = _ephemeral_low()
    if low is not None and low > LOWEST + 1000:
        pick = random.SystemRandom()  # not the module's generator, which tests may seed (Hypothesis does)
        for _ in range(50):
            port = pick.randrange(LOWEST, low)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
