"""Process facts the tests read from /proc."""

from __future__ import annotations

from pathlib import Path


def alive(pid: int) -> bool:
    """Running; a zombie (exited, not yet reaped by its parent) is gone for our purposes."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
