"""`make run` (python -m noetl_devstack.run) as the devstack tests start it: until it says the
fleet is up, or a clear failure with everything it printed."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping


def start(data: Path, shards: int = 1, env: Mapping[str, str] | None = None) -> tuple[subprocess.Popen, str, list[str]]:
    """The process, the router URL it printed, and its output so far."""
    proc = subprocess.Popen([sys.executable, "-m", "noetl_devstack.run", "--shards", str(shards),
                             "--data-dir", str(data)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=None if env is None else dict(env))
    lines: list[str] = []
    api = ""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("router: "):
            api = line.split(" ", 1)[1].strip()
        if line.startswith("fleet is up"):
            return proc, api, lines
    proc.kill()
    raise AssertionError("make run did not come up:\n" + "".join(lines) + (proc.stdout.read() or ""))
