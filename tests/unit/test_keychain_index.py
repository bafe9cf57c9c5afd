"""The keychain conformance index (tests/conformance/keychain/index.json) accounts for every e2e
playbook that declares a top-level `keychain:`: each is run or excluded with a reason."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parents[1] / "conformance" / "keychain"
INDEX = json.loads((HERE / "index.json").read_text())
# The snapshot sits next to the checkout (`base`), also seen from a worktree further down.
BASE = next((p / "shared" / "e2e" for p in Path(__file__).resolve().parents if (p / "shared" / "e2e").is_dir()),
            (HERE / INDEX["base"]).resolve())


def test_every_keychain_playbook_is_run_or_excluded_with_a_reason():
    playbooks = BASE / "fixtures" / "playbooks"
    if not playbooks.is_dir():
        pytest.skip(f"the e2e snapshot is missing ({BASE})")
    present = {str(p.relative_to(BASE)) for p in playbooks.rglob("*.yaml")
               if re.search(r"^keychain:", p.read_text(errors="replace"), re.M)}
    # the cloud index runs the keychain playbooks that also need GCS
    cloud = json.loads((HERE.parent / "cloud" / "index.json").read_text())
    run = {f["file"] for f in INDEX["fixtures"]} | ({f["file"] for f in cloud["fixtures"]} & present)
    excluded = INDEX["excluded"]
    assert present == run | set(excluded), {"unaccounted": sorted(present - run - set(excluded)),
                                            "missing from the snapshot": sorted((run | set(excluded)) - present)}
    assert not run & set(excluded)
    assert all(len(reason) > 20 for reason in excluded.values())
    assert all("keychain" in f["needs"] for f in INDEX["fixtures"])
