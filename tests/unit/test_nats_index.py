"""The nats conformance index (tests/conformance/nats/index.json): every e2e playbook with a
`kind: nats` tool is run there (auth0_login.yaml by the core index, with its default workload),
and every fixture that departs from a playbook's defaults says why."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parents[1] / "conformance" / "nats"
INDEX = json.loads((HERE / "index.json").read_text())
CORE = json.loads((HERE.parent / "core" / "index.json").read_text())
BASE = next((p / "shared" / "e2e" for p in Path(__file__).resolve().parents if (p / "shared" / "e2e").is_dir()),
            (HERE / INDEX["base"]).resolve())


def test_every_nats_playbook_is_run():
    playbooks = BASE / "fixtures" / "playbooks"
    if not playbooks.is_dir():
        pytest.skip(f"the e2e snapshot is missing ({BASE})")
    present = {str(p.relative_to(BASE)) for p in playbooks.rglob("*.yaml")
               if re.search(r"kind:\s*nats\b", p.read_text(errors="replace"))}
    run = {f["file"] for f in INDEX["fixtures"] + CORE["fixtures"]}
    assert present and present <= run, sorted(present - run)


def test_ids_are_unique_dependencies_exist_and_departures_say_why():
    ids = [f["id"] for f in INDEX["fixtures"]]
    assert len(ids) == len(set(ids))
    for f in INDEX["fixtures"]:
        assert all(dep in ids for dep in f.get("run_first") or []), f["id"]
        assert not f.get("payload") and not f.get("setup_sql") or len(f.get("why") or "") > 20, f["id"]
    if (BASE / "fixtures").is_dir():
        assert all((BASE / f["file"]).is_file() for f in INDEX["fixtures"])
