"""The services index (tests/conformance/services/index.json): its playbooks exist, ids are unique,
and every departure from a playbook's own workload beyond an address says why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[1] / "conformance" / "services"
INDEX = json.loads((SERVICES / "index.json").read_text())
BASE = (SERVICES / INDEX["base"]).resolve()
ADDRESSES = {"api_url", "gateway_url", "problem_catalog_url", "http_endpoint", "target", "credential_name"}


def test_fixtures_exist_and_every_departure_says_why():
    if not (BASE / "fixtures" / "playbooks").is_dir():
        pytest.skip(f"the e2e snapshot is missing ({BASE})")
    ids = [f["id"] for f in INDEX["fixtures"]]
    assert len(ids) == len(set(ids))
    for f in INDEX["fixtures"]:
        assert (BASE / f["file"]).is_file(), f["file"]
        scaled = set(f.get("payload") or {}) - ADDRESSES
        if scaled or f.get("setup_sql") or f["status"] != "COMPLETED":
            assert len(f.get("why") or "") > 40, f["id"]
        if f["status"] == "FAILED":
            assert f.get("error"), f["id"]


def test_credentials_point_at_the_test_api_only():
    for cred in INDEX["credentials"]:
        urls = [v for k, v in cred["data"].items() if k.endswith("_url")]
        assert urls and all(u.startswith("{test_api}") for u in urls), cred["name"]
