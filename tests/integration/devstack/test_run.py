"""`make run` (python -m noetl_devstack.run): starts everything, says where, stops it all on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request


def test_run_starts_the_fleet_and_stops_everything(tmp_path):
    data = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "noetl_devstack.run", "--shards", "2", "--data-dir", str(data)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    api = None
    up = False
    try:
        deadline = time.monotonic() + 120
        while not up and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("router: "):
                api = line.split(" ", 1)[1].strip()
            up = line.startswith("fleet is up")
        assert api and up, "".join(lines)
        out_so_far = "".join(lines)
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
