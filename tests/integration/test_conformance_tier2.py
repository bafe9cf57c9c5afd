"""The tier-2 conformance index (NoETL e2e playbooks against the local test API, Postgres, DuckDB
and Python; tests/conformance/tier2) through a live fleet behind the router, 3 shards.

`make test` runs the fixtures not marked `slow` (the quick ones: pagination, retry, vars, save
storage, script sources, the small load and regression playbooks) through 3 shards, which a
single shard's run adds nothing to but 25 s (the shared suite covers 1, 2 and 3 shards);
`make conformance-tier2` (run by .ci/run after `make test` at 1 and 3 shards) runs every
fixture, slow ones included."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conformance.__main__ import with_local_fleet
from tests.conformance.runner import load_index

TIER2 = Path(__file__).resolve().parents[1] / "conformance" / "tier2"
E2E = (TIER2 / load_index(TIER2)["base"]).resolve()


@pytest.mark.skipif(not (E2E / "fixtures" / "playbooks").is_dir(), reason=f"the e2e snapshot is missing ({E2E})")
@pytest.mark.parametrize("shards", [3])
async def test_quick_tier2_fixtures_pass_through_the_router(shards):
    quick = {f["id"] for f in load_index(TIER2)["fixtures"] if not f.get("slow")}
    results = await with_local_fleet(TIER2, shards, quick)
    failed = [f"{r.fixture}: {r.detail}" for r in results if not r.passed]
    assert {r.fixture for r in results} == quick
    assert not failed, "\n".join(failed)
