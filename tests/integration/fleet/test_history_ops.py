"""`python -m noetl_ops retention status|run` and `archive show` against a real fleet (every shard
asked at its registered URL with the internal token)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def _ops(fleet, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **({"NOETL_INTERNAL_API_TOKEN": fleet.token, "NOETL_API_URL": fleet.router} if fleet else {})}
    return subprocess.run([sys.executable, "-m", "noetl_ops", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)


async def test_retention_status_and_run_over_every_shard(live_fleet, tmp_path):
    done = _ops(live_fleet, "retention", "status", "--json", "--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert len(rows) >= 2 and all(r["error"] is None for r in rows)
    for r in rows:
        assert r["answer"]["slices"][0] == "p0"
        assert r["answer"]["enabled"] is False  # the fleet keeps history unless told otherwise
    table = _ops(live_fleet, "retention", "status", "--data-dir", str(tmp_path))
    assert table.returncode == 0 and "SHARD" in table.stdout and " off " in table.stdout
    ran = _ops(live_fleet, "retention", "run", "--data-dir", str(tmp_path))
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.count("retention is off") == len(rows)


def test_archive_show_names_what_is_missing(tmp_path):  # a folder, no fleet
    missing = _ops(None, "archive", "show", "123", "--dir", str(tmp_path / "none"))
    assert missing.returncode != 0 and "does not exist" in missing.stderr
    empty = _ops(None, "archive", "show", "123", "--dir", str(tmp_path))
    assert empty.returncode != 0 and "holds execution 123" in empty.stderr
