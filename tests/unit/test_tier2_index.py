"""The tier-2 conformance index (tests/conformance/tier2/index.json) accounts for every e2e
playbook of its directories: each is run, registered first, or excluded with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TIER2 = Path(__file__).resolve().parents[1] / "conformance" / "tier2"
INDEX = json.loads((TIER2 / "index.json").read_text())
BASE = (TIER2 / INDEX["base"]).resolve()
DIRECTORIES = ["pagination", "retry_test", "vars_test", "batch_execution", "save_storage_test",
               "script_execution", "load_test", "regression_test"]


def test_every_playbook_of_the_tier2_directories_is_run_or_excluded_with_a_reason():
    if not (BASE / "fixtures" / "playbooks").is_dir():
        pytest.skip(f"the e2e snapshot is missing ({BASE})")
    present = {str(p.relative_to(BASE)) for d in DIRECTORIES
               for p in (BASE / "fixtures" / "playbooks" / d).rglob("*.yaml")}
    run = {f["file"] for f in INDEX["fixtures"]}
    registered = {r for f in INDEX["fixtures"] for r in f.get("register_first") or []}
    excluded = INDEX["excluded"]
    assert present == run | registered | set(excluded), {
        "unaccounted": sorted(present - run - registered - set(excluded)),
        "missing from the snapshot": sorted((run | registered | set(excluded)) - present)}
    assert not run & set(excluded)
    assert all(len(reason) > 20 for reason in excluded.values())


def test_fixture_ids_are_unique_and_payload_differences_are_explained():
    ids = [f["id"] for f in INDEX["fixtures"]]
    assert len(ids) == len(set(ids))
    for f in INDEX["fixtures"]:
        if f["status"] == "FAILED":
            assert f.get("why") and f.get("error"), f["id"]
