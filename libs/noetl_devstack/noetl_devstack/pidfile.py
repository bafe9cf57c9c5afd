"""Processes a supervisor started, recorded on disk so that whoever comes next (a watchdog after
`make run` died, the next `make run`) can stop exactly those and nothing else.

A pid alone is not proof: after a reboot or a long time the number may name another process. So
each entry keeps the process' start time (field 22 of /proc/<pid>/stat, in clock ticks since
boot), and a pid is only signalled while that still matches."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import msgspec


class Recorded(msgspec.Struct, kw_only=True):
    name: str
    pid: int
    started: int  # /proc/<pid>/stat start time; 0 where /proc is missing (then the pid is trusted)


class PidFile(msgspec.Struct, kw_only=True):
    owner: Recorded              # the supervising process (make run)
    children: list[Recorded] = []


def start_time(pid: int) -> int | None:
    """The process' start time, or None when no such process runs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return 0
    # The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    return int(stat[stat.rindex(")") + 2:].split()[19])


def record(name: str, pid: int) -> Recorded:
    return Recorded(name=name, pid=pid, started=start_time(pid) or 0)


def is_same(entry: Recorded) -> bool:
    """The recorded process still runs (and is the same process, not a reused pid)."""
    now = start_time(entry.pid)
    if now is None or (entry.started and now != entry.started):
        return False
    try:
        os.kill(entry.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write(path: Path, data: PidFile) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(msgspec.json.encode(data))
    tmp.replace(path)  # whole or not at all


def read(path: Path) -> PidFile | None:
    try:
        return msgspec.json.decode(path.read_bytes(), type=PidFile)
    except (FileNotFoundError, msgspec.DecodeError, msgspec.ValidationError):
        return None


def stop_all(entries: list[Recorded], timeout: float = 5.0) -> list[str]:
    """SIGTERM every recorded process that is still itself, wait for all of them together, then
    SIGKILL what is left. Returns the names it signalled. For processes that are not our
    children (those are stopped through their Popen, which also reaps them)."""
    alive = [e for e in entries if is_same(e)]
    for entry in alive:
        _signal(entry, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    waiting = list(alive)
    while waiting and time.monotonic() < deadline:
        waiting = [e for e in waiting if is_same(e)]
        if waiting:
            time.sleep(0.05)
    for entry in waiting:
        _signal(entry, signal.SIGKILL)
    return [e.name for e in alive]


def _signal(entry: Recorded, sig: int) -> None:
    try:
        os.kill(entry.pid, sig)
    except ProcessLookupError:
        pass

