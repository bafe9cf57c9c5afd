"""The core index (tests/conformance/core/index.json) is NoETL's core regression set: 66 fixtures
(noetl/e2e scripts/rust_regression_run.sh), each either run here or listed as absent from the snapshot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "conformance" / "core"
INDEX = json.loads((CORE / "index.json").read_text())
BASE = (CORE / INDEX["base"]).resolve()
RUN = [f for f in INDEX["fixtures"] if not f.get("setup_only")]


def test_the_66_are_run_or_absent_once_each():
    files = [f["file"] for f in RUN]
    assert len(files) == len(set(files)) and not set(files) & set(INDEX["absent"])
    assert len(files) + len(INDEX["absent"]) == 66


def test_fixtures_exist_ids_are_unique_and_every_departure_says_why():
    if not (BASE / "fixtures" / "playbooks").is_dir():
        pytest.skip(f"the e2e snapshot is missing ({BASE})")
    ids = [f["id"] for f in INDEX["fixtures"]]
    assert len(ids) == len(set(ids))
    for f in INDEX["fixtures"]:
        assert (BASE / f["file"]).is_file(), f["file"]
        for extra in f.get("register_first") or []:
            assert (BASE / extra).is_file(), extra
        assert all(dep in ids for dep in f.get("run_first") or []), f["id"]
        if f["status"] != "COMPLETED" or f.get("setup_sql") or f.get("setup_only"):
            assert len(f.get("why") or "") > 20, f["id"]
    for name, reason in INDEX["absent"].items():
        assert not (BASE / name).exists() and reason, name
    known = json.loads((CORE / "known_failures.json").read_text())["fixtures"]
    assert set(known) <= set(ids) and all(len(r) > 20 for r in known.values())


def test_every_e2e_playbook_is_in_an_index_or_in_the_rest_with_its_expected_outcome():
    if not (BASE / "fixtures" / "playbooks").is_dir():
        pytest.skip(f"the e2e snapshot is missing ({BASE})")
    present = {str(p.relative_to(BASE)) for p in (BASE / "fixtures" / "playbooks").rglob("*.yaml")}
    covered: set[str] = set()
    for path in sorted(CORE.parent.glob("*/index.json")):  # every conformance index (core, tier2, keychain, ...)
        index = json.loads(path.read_text())
        covered |= {f["file"] for f in index["fixtures"]}
        covered |= {r for f in index["fixtures"] for r in f.get("register_first") or []}
        covered |= set(index.get("excluded") or {})
    rest = json.loads((CORE.parent / "e2e_rest.json").read_text())["playbooks"]
    assert present == covered | set(rest), {"unaccounted": sorted(present - covered - set(rest)),
                                             "not in the snapshot": sorted(set(rest) - present)}
    assert not covered & set(rest)
    assert all(v["expected"] in ("cannot run here", "not yet run here") and len(v["reason"]) > 15
               for v in rest.values())
