"""`make run` (python -m noetl_devstack.run): starts everything, says where, stops it all on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

from .make_run import start


def _start(data, shards: int) -> tuple[subprocess.Popen, str, str]:
    """`make run --shards n` as a user runs it (no durability override): process, output, router."""
    env = {k: v for k, v in os.environ.items() if k != "NOETL_DEVSTACK_PG_DURABILITY"}
    proc, api, lines = start(data, shards, env)
    return proc, "".join(lines), api


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return out


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


def _healthy(api: str, timeout: float = 20.0) -> bool:
    """The router's /api/health is ok once it reaches every shard (it discovers new ones every 2 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if _get(f"{api}/api/health")["status"] == "ok":
                return True
        except urllib.error.HTTPError:
            pass
        time.sleep(0.5)
    return False


def test_run_starts_the_fleet_and_stops_everything(tmp_path):
    data = tmp_path / "run"
    proc, out_so_far, api = _start(data, 2)
    try:
        assert "durable)" in out_so_far  # make run's Postgres is durable unless asked otherwise
        assert "registered sample playbook examples/fleet_sample" in out_so_far
        assert "COMPLETED" in out_so_far, out_so_far
        for name in ("api-shard-0", "api-shard-1", "router", "outbox-publisher", "projector", "worker-0"):
            assert f"  {name}: http://" in out_so_far, name
        with urllib.request.urlopen(f"{api}/readyz", timeout=5) as resp:
            assert json.load(resp)["status"] == "ready"
        # The sample went through the router: the router lists it (merged from every shard).
        with urllib.request.urlopen(f"{api}/api/executions", timeout=5) as resp:
            assert [e["path"] for e in json.load(resp)] == ["examples/fleet_sample"]
        infra = json.loads((data / "infra.json").read_text())
        nats_pid = infra["nats_pid"]
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "stopped" in out
    assert not (data / "infra.json").exists()
    try:
        os.kill(nats_pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive, "embedded NATS still running after make run stopped"
    log_lines = (data / "logs" / "api-shard-0.log").read_text().splitlines()
    assert log_lines and all(json.loads(line)["service"] == "api-shard" for line in log_lines if line.startswith("{"))


def test_run_over_a_stored_map_of_another_size_says_what_it_did(tmp_path):
    """The shard map in the data directory decides ownership: asking for more shards commits the
    bigger epoch (as make scale does); asking for fewer still starts every stored shard."""
    data = tmp_path / "run"
    _stop(_start(data, 1)[0])
    proc, out, api = _start(data, 2)
    try:
        assert "committed a 2-shard epoch" in out, out
        assert [e["shard_count"] for e in _get(f"{api}/api/shard-map")["epochs"]] == [1, 2]
    finally:
        _stop(proc)
    proc, out, api = _start(data, 1)
    try:
        assert "so api-shard-1 started too" in out, out
        assert {s["index"] for s in _get(f"{api}/api/shard-map")["shards"]} == {0, 1}
        assert _healthy(api), "the router does not reach both shards"
    finally:
        _stop(proc)
