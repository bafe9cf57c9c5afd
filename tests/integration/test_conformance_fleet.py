"""The shared conformance suite through a live fleet: 2 shards, publisher, 2 workers, real
Postgres and NATS JetStream, every fixture registered, executed and checked."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conformance.__main__ import with_local_fleet

CONFORMANCE = Path(__file__).resolve().parents[3] / "shared" / "conformance"


async def test_every_fixture_passes_through_the_fleet():
    results = await with_local_fleet(CONFORMANCE, 2, None)
    failed = [f"{r.fixture}: {r.detail}" for r in results if not r.passed]
    assert len(results) == len(json.loads((CONFORMANCE / "index.json").read_text())["fixtures"])
    assert not failed, "\n".join(failed)
