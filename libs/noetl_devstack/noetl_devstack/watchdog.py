"""Cleans up after a `make run` that died without cleaning up (SIGKILL, a closed terminal, a CI
timeout): started by `make run` in a session of its own, it waits for that process to go; if the
pid file is still there (a clean stop removes it last), it stops the recorded fleet processes and
the embedded Postgres and NATS. Fleet processes usually went already (parent-death signal); the
embedded servers are daemons and need this.

    python -m noetl_devstack.watchdog <data_dir>
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from . import pidfile
from .infra import Infra

PID_FILE = "fleet.pids"
POLL_SECONDS = 0.2


def clean_up(data_dir: Path) -> list[str]:
    """Stop what a dead `make run` left: its recorded processes (each verified), then the
    embedded servers. Returns what was stopped."""
    path = data_dir / PID_FILE
    recorded = pidfile.read(path)
    stopped: list[str] = []
    if recorded is not None:
        stopped = pidfile.stop_all(recorded.children)
    if Infra(data_dir).down():
        stopped.append("postgres+nats")
    path.unlink(missing_ok=True)
    return stopped


def watch(data_dir: Path) -> int:
    path = data_dir / PID_FILE
    deadline = time.monotonic() + 120
    recorded = pidfile.read(path)
    while recorded is None:  # make run writes it right after starting us
        if time.monotonic() > deadline:
            return 1
        time.sleep(POLL_SECONDS)
        recorded = pidfile.read(path)
    while pidfile.is_same(recorded.owner):
        time.sleep(POLL_SECONDS)
    now = pidfile.read(path)
    # Still there and still naming the process we watched: it did not get to clean up. (A file
    # naming another owner belongs to a newer make run on the same data; not ours to touch.)
    if now is not None and now.owner == recorded.owner:
        stopped = clean_up(data_dir)
        print(f"watchdog: make run (pid {recorded.owner.pid}) died; stopped {', '.join(stopped) or 'nothing'}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(watch(Path(sys.argv[1])))
