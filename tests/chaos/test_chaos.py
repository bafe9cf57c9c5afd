"""Chaos: processes and servers of a loaded 3-shard fleet fail one after another; every execution
still ends exactly once, no event is lost, no step runs past its attempts, and the fleet recovers
(the time is measured). See harness.py for what is checked and how recovery is measured.

`make test` runs a short version (SIGKILL of a shard, then of a worker, at a low load, on the
session's Postgres and NATS). `make chaos` runs every fault (`-m chaos`) on a Postgres and NATS
of its own, which it restarts, and writes bench/results/chaos.json."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import aiohttp
import pytest
from noetl_devstack.local_fleet import discard_state

from .harness import ChaosFleet, Fault, problems, run_faults

REPORT = os.environ.get("NOETL_CHAOS_REPORT")


def _check(report: dict, faults: list[str]) -> None:
    print("chaos:", json.dumps(report, indent=2))
    assert list(report["faults"]) == ["baseline", *faults], "not every fault ran (one was not recovered from)"
    assert not problems(report), problems(report)
    for name in faults:
        assert report["faults"][name]["executions"] > 0, f"{name}: no execution started under this fault"


async def test_shard_and_worker_killed_under_load(tmp_path):
    # Its own Postgres and NATS: a killed worker leaves unacked messages on the durable consumers
    # it shared, which must not stall the fleets of later tests on the session's NATS.
    # A short lease: the killed worker's command is taken over sooner (the long run keeps the default).
    fleet = await ChaosFleet.own_infra(tmp_path, lease=5.0)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            await fleet.start(http)
            faults = [Fault("sigkill api-shard", lambda: fleet.kill("api-shard-0"), shard=0),
                      Fault("sigkill worker", lambda: fleet.kill_holding("worker-0"))]
            report = await run_faults(fleet, http, faults, lanes=4, baseline_seconds=4.0, settle_seconds=1.0)
    finally:
        fleet.stop()
    _check(report, [f.name for f in faults])


@pytest.mark.chaos
@pytest.mark.timeout(1500)
async def test_every_fault_under_load():
    work = Path(tempfile.mkdtemp(prefix="noetl-chaos-"))
    fleet = await ChaosFleet.own_infra(work)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=90)) as http:
            await fleet.start(http)
            faults = [
                Fault("sigkill api-shard", lambda: fleet.kill("api-shard-0"), shard=0),
                Fault("sigkill router", lambda: fleet.kill("router")),
                Fault("sigkill outbox-publisher", lambda: fleet.kill("outbox-publisher")),
                Fault("sigkill projector", lambda: fleet.kill("projector")),
                Fault("sigkill worker", lambda: fleet.kill_holding("worker-0")),
                Fault("restart postgres", fleet.restart_postgres),
                Fault("sigkill postgres", fleet.sigkill_postgres),
                Fault("restart nats", fleet.restart_nats),
                Fault("pause api-shard past the claim lease", lambda: fleet.pause("api-shard-1", fleet.lease + 3),
                      shard=1),
            ]
            report = await run_faults(fleet, http, faults, lanes=int(os.environ.get("NOETL_CHAOS_LANES", "8")))
    finally:
        fleet.stop()
        discard_state(work)
    print("chaos: process logs in", work / "logs")
    if REPORT:
        Path(REPORT).write_text(json.dumps(report, indent=2) + "\n")
    _check(report, [f.name for f in faults])
