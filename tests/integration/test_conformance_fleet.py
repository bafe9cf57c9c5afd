"""The shared conformance suite through a live fleet behind the router: 1 and 3 shards (`.ci/run`
adds 2: `make conformance SHARDS=2`), publisher, projector, 2 workers, real Postgres and NATS
JetStream; every fixture registered, executed and checked through the router."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conformance.__main__ import with_local_fleet

CONFORMANCE = Path(__file__).resolve().parents[3] / "shared" / "conformance"


@pytest.mark.parametrize("shards", [1, 3])
async def test_every_fixture_passes_through_the_router(shards):
    results = await with_local_fleet(CONFORMANCE, shards, None)
    failed = [f"{r.fixture}: {r.detail}" for r in results if not r.passed]
    assert len(results) == len(json.loads((CONFORMANCE / "index.json").read_text())["fixtures"])
    assert not failed, "\n".join(failed)
