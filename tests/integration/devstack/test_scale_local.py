"""`make scale SHARDS=3` against a running `make run` with 2 shards, as a user would do it in a
second terminal: the new shard is started by (and belongs to) `make run`, the epoch is committed,
`python -m noetl_ops status` shows 3 shards, and `make run`'s Ctrl-C stops the added shard too.

`make run` is started as `python -m noetl_devstack.run` (what the target runs) so the test can
send it SIGINT directly; `make scale` and the status CLI are run for real."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import msgspec
import pytest

REPO = Path(__file__).resolve().parents[3]


class RunningFleet(msgspec.Struct):
    proc: subprocess.Popen
    data: Path
    run: dict
    token: str
    scale: subprocess.CompletedProcess
    output: list[str]


def _get(url: str, token: str | None = None) -> dict:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url + "/healthz", timeout=2).close()
        return True
    except (urllib.error.URLError, OSError):
        return False


def _env(data: Path) -> dict[str, str]:
    # What a user's second terminal has: make finds the fleet through NOETL_DATA_DIR's run.json.
    return {**os.environ, "NOETL_DATA_DIR": str(data)}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Iterator[RunningFleet]:
    data = tmp_path_factory.mktemp("scale") / "run"
    proc = subprocess.Popen([sys.executable, "-m", "noetl_devstack.run", "--shards", "2", "--data-dir", str(data)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        while not lines or not lines[-1].startswith("fleet is up"):
            line = proc.stdout.readline()
            assert line, "make run ended early:\n" + "".join(lines)
            lines.append(line)
        run = json.loads((data / "run.json").read_text())
        token = json.loads((data / "secrets.json").read_text())["NOETL_INTERNAL_API_TOKEN"]
        scale = subprocess.run(["make", "-s", "scale", "SHARDS=3"], cwd=REPO, env=_env(data),
                               capture_output=True, text=True, timeout=300)
        yield RunningFleet(proc=proc, data=data, run=run, token=token, scale=scale, output=lines)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=90)


def test_make_scale_starts_the_new_shard_inside_make_run(fleet):
    shards = _get(fleet.run["control"] + "/shards", fleet.token)["shards"]
    assert [(s["index"], s["running"]) for s in shards] == [(0, True), (1, True), (2, True)], fleet.scale
    new = shards[2]["url"]
    assert _get(new + "/readyz")["status"] == "ready"
    assert (fleet.data / "logs" / "api-shard-2.log").exists()
    assert "starting api-shard-2 in make run" in fleet.scale.stdout
    assert "api-shard-2: ready at " + new in fleet.scale.stdout


def test_the_epoch_is_committed_and_status_shows_three_shards(fleet):
    assert fleet.scale.returncode == 0, fleet.scale.stdout + fleet.scale.stderr
    assert "grow epoch committed: 3 shards" in fleet.scale.stdout
    status = subprocess.run([sys.executable, "-m", "noetl_ops", "status", "--json"], cwd=REPO, env=_env(fleet.data),
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    rows = json.loads(status.stdout)["shards"]
    assert [r["shard"] for r in rows] == [0, 1, 2]
    assert all(r["ready"] for r in rows)
    assert all(r["state"] in ("active", "joining") for r in rows), rows
    table = subprocess.run([sys.executable, "-m", "noetl_ops", "status"], cwd=REPO, env=_env(fleet.data),
                           capture_output=True, text=True, timeout=60).stdout
    assert len(table.splitlines()) == 5  # header, 3 shards, summary


def test_make_scale_drains_back_to_two(fleet):
    drain = subprocess.run(["make", "-s", "scale", "SHARDS=2"], cwd=REPO, env=_env(fleet.data),
                           capture_output=True, text=True, timeout=300)
    assert drain.returncode == 0, drain.stdout + drain.stderr
    assert "drain epoch committed: 2 shards" in drain.stdout and "shard 2: drained" in drain.stdout
    shards = _get(fleet.run["control"] + "/shards", fleet.token)["shards"]
    assert [s["index"] for s in shards] == [0, 1]


def test_ctrl_c_of_make_run_stops_the_shards_it_added(fleet):
    shards = [s["url"] for s in _get(fleet.run["control"] + "/shards", fleet.token)["shards"]]
    assert len(shards) >= 2
    fleet.proc.send_signal(signal.SIGINT)
    out, _ = fleet.proc.communicate(timeout=90)
    assert fleet.proc.returncode == 0, out
    assert not (fleet.data / "run.json").exists()
    # make run returns only after its supervisor stopped (SIGTERM, then SIGKILL) every process.
    assert [url for url in shards if _answers(url)] == []
