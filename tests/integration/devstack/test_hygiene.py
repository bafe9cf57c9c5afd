"""`make run` cleans up after itself: a SIGKILLed make run leaves no fleet process, Postgres or
NATS behind (parent-death signal + watchdog), the next make run over the same data works, a
fleet process that dies is restarted, and a clean stop takes seconds."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from pathlib import Path

from noetl_devstack import pidfile
from noetl_devstack.watchdog import PID_FILE

from tests.support.processes import alive

from .make_run import start


def _fleet_pids(data: Path) -> dict[str, int]:
    recorded = pidfile.read(data / PID_FILE)
    assert recorded is not None
    pids = {c.name: c.pid for c in recorded.children}
    infra = json.loads((data / "infra.json").read_text())
    pids["nats"] = infra["nats_pid"]
    pg_pid_file = data / "pg" / "data" / "postmaster.pid"
    if pg_pid_file.exists():
        pids["postgres"] = int(pg_pid_file.read_text().split()[0])
    return pids


def _wait_gone(pids: dict[str, int], timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    left = [n for n, p in pids.items() if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = [n for n, p in pids.items() if alive(p)]
    return left


def _run_sample(api: str) -> str:
    body = json.dumps({"path": "examples/fleet_sample", "workload": {"who": "hygiene"}}).encode()
    req = urllib.request.Request(f"{api}/api/execute", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        execution_id = json.load(resp)["execution_id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{api}/api/executions/{execution_id}", timeout=10) as resp:
            status = json.load(resp)["status"]
        if status in ("COMPLETED", "FAILED", "CANCELLED"):
            return status
        time.sleep(0.2)
    return "TIMEOUT"


def test_killed_make_run_leaves_nothing_and_the_next_one_starts(tmp_path):
    data = tmp_path / "run"
    proc, _api, _ = start(data)
    pids = _fleet_pids(data)
    assert {"api-shard-0", "router", "worker-0", "nats", "postgres"} <= set(pids)
    proc.kill()  # SIGKILL: no handler runs, nothing of ours cleans up in this process
    proc.wait()
    t0 = time.monotonic()
    left = _wait_gone(pids, 30)
    assert not left, f"still running {time.monotonic() - t0:.1f}s after make run was killed: {left}"
    took = time.monotonic() - t0
    while (data / PID_FILE).exists() and time.monotonic() - t0 < 30:
        time.sleep(0.1)  # the watchdog removes its records once everything is down
    assert not (data / PID_FILE).exists() and not (data / "infra.json").exists()
    print(f"fleet gone {took:.1f}s after make run was SIGKILLed")

    # Over the same data the next make run starts cleanly and runs executions.
    proc, api, _ = start(data)
    try:
        assert _run_sample(api) == "COMPLETED"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert proc.returncode == 0


def test_dead_process_restarted_and_stop_is_quick(tmp_path):
    data = tmp_path / "run"
    proc, api, lines = start(data)
    stopped_at = None
    try:
        control = next(line.split()[1] for line in lines if line.strip().startswith("control: "))
        pids = _fleet_pids(data)
        os.kill(pids["api-shard-0"], signal.SIGKILL)
        deadline = time.monotonic() + 30
        restarted = None
        while time.monotonic() < deadline:
            now = pidfile.read(data / PID_FILE)
            new = {c.name: c.pid for c in now.children} if now else {}
            if new.get("api-shard-0") not in (None, pids["api-shard-0"]):
                restarted = new["api-shard-0"]
                break
            time.sleep(0.2)
        assert restarted, "api-shard-0 was not restarted"
        # Executions go on through the restarted shard.
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline:
            try:
                status = _run_sample(api)
                break
            except OSError:
                time.sleep(0.5)
        assert status == "COMPLETED"
        with urllib.request.urlopen(f"{control}/metrics", timeout=5) as resp:
            metrics = resp.read().decode()
        assert 'noetl_devstack_restarts_total{process="api-shard-0"} 1.0' in metrics, metrics
    finally:
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    took = time.monotonic() - stopped_at
    print(f"clean stop took {took:.1f}s")
    assert proc.returncode == 0, out
    # Every process stops on SIGTERM together, then Postgres and NATS side by side.
    assert took < 15, f"stop took {took:.1f}s"
    assert not (data / PID_FILE).exists()
