"""NoETL's own Python worker (`python -m noetl.worker` from ../shared/noetl-reference, unchanged) as
the fleet's only worker, as `make run WORKERS=0` leaves it: step results read as NoETL reads them,
each tool run once although its two consumers both see every command, no 4xx but the claim 409s
NoETL's server answers too, and no loop of them. The whole conformance index on it, and a mixed run
beside the fleet's worker, are `make conformance-noetl-worker`, which runs this module too (marked
`noetl_worker`, out of `make test`: its venv build alone is ~50 s on a fresh clone).

Its venv is built once under .cache/ (~40 s) when a Python 3.12+ is found; else the test is
skipped, saying so."""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from tests.conformance.mixed import LOOP_ITEMS, PLAYBOOK, check_execution, events_of, run_one
from tests.support.noetl_worker import venv
from tests.support.noetl_worker.process import http_trace, start_noetl_worker

from .conftest import own_fleet, register

pytestmark = pytest.mark.noetl_worker

EXECUTIONS = 4
CLAIM = re.compile(r"/api/commands/(\d+)/claim$")


@pytest.fixture(scope="module")
def noetl_python() -> Path:
    reference = venv.reference_dir()
    if not (reference / "pyproject.toml").exists():
        pytest.skip(f"NoETL's reference tree is not at {reference}")
    found = venv.cached(reference)
    if found is not None:
        return found
    if venv.find_python() is None:
        pytest.skip("NoETL's worker needs Python 3.12+ and none was found (make noetl-worker-venv says more); "
                    "make conformance-noetl-worker runs it in CI")
    return venv.build(reference)


async def test_noetl_worker_alone_runs_each_tool_once_with_noetls_results(noetl_python, http):
    with tempfile.TemporaryDirectory(prefix="noetl-marks-") as scratch:
        marks = Path(scratch)
        async with own_fleet("noetl-pyworker-", shards=2, workers=0) as fleet:
            nats_url = fleet.spec("router").env["NOETL_NATS_URL"]
            trace = fleet.logs / "noetl-worker.trace.jsonl"
            await start_noetl_worker(fleet.supervisor, noetl_python, name="noetl-worker", router=fleet.router,
                                     nats_url=nats_url, cwd=marks, data_dir=marks, trace_file=trace)
            await register(http, fleet.router, PLAYBOOK)
            gate = asyncio.Semaphore(EXECUTIONS)
            runs = await asyncio.gather(*(run_one(http, fleet.router, marks, gate, 120.0) for _ in range(EXECUTIONS)))
            problems, claimed_by = [], Counter()
            for token, execution_id, status in runs:
                events = await events_of(http, fleet.router, execution_id)
                found, who = check_execution(token, {**status, "execution_id": execution_id}, events, marks)
                problems += found
                claimed_by += who
                marked = Counter(e["event_type"] for e in events if e["event_type"] in ("step.enter", "step.exit"))
                # One each per step run (4 steps, the loop's step once): the worker's own pair is not logged.
                assert marked == {"step.enter": 4, "step.exit": 4}, marked
            assert problems == []
            assert sum(claimed_by.values()) == EXECUTIONS * (3 + LOOP_ITEMS) and len(claimed_by) == 1
        exchanges = http_trace(trace)
    refused = [t for t in exchanges if t.get("status", 0) >= 400]
    # Only the second consumer's claim of a command the first holds: 409 with NoETL's detail.code.
    assert refused and all(CLAIM.search(t["url"]) and t["status"] == 409 and '"active_claim"' in t["resp"]
                           for t in refused), refused[:3]
    claims = Counter(m.group(1) for t in exchanges for m in [CLAIM.search(t["url"])] if m)
    # Two consumers see each command once: at most two claims of it (no nak-and-retry loop).
    assert max(claims.values()) <= 2, claims.most_common(3)
