"""The frames conformance index (tests/conformance/frames/index.json) runs NoETL's frames-runtime
playbook, which the tier-2 index excludes in its favour, with a workload that still tests it."""

from __future__ import annotations

import json
from pathlib import Path

CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance"
FRAMES = json.loads((CONFORMANCE / "frames" / "index.json").read_text())
TIER2 = json.loads((CONFORMANCE / "tier2" / "index.json").read_text())
PLAYBOOK = "fixtures/playbooks/batch_execution/frame_heartbeat_regression/frame_heartbeat_regression.yaml"


def test_the_frames_playbook_runs_here_and_tier2_says_so():
    (fixture,) = FRAMES["fixtures"]
    assert fixture["file"] == PLAYBOOK and fixture["status"] == "COMPLETED"
    assert "tests/conformance/frames" in TIER2["excluded"][PLAYBOOK]
    # its pg_k8s is the execution's own shard database, which only a local fleet can name
    assert FRAMES["shard_db_credentials"] == ["pg_k8s"] and "shard_db" in fixture["needs"]


def test_the_work_still_outlasts_the_lease_and_is_heartbeated_within_it():
    payload = next(iter(FRAMES["fixtures"]))["payload"]
    delay, lease, beat = (payload[k] for k in ("response_delay_seconds", "frame_lease_seconds",
                                               "frame_heartbeat_seconds"))
    assert 5 <= lease < delay and 0 < beat < lease  # 5: the least a frame lease may be
