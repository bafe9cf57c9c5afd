"""Every conformance fixture through the engine and an in-memory worker (python runs for real)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from noetl_common.dsl import PlaybookError, parse_playbook
from noetl_common.engine.simulator import Simulator
from tests.conformance.checks import subset

CONFORMANCE = Path(os.environ.get("NOETL_CONFORMANCE_DIR")
                   or Path(__file__).resolve().parents[4] / "shared" / "conformance")
INDEX = json.loads((CONFORMANCE / "index.json").read_text())
FIXTURES = INDEX["fixtures"]


def load(fixture: dict) -> Any:
    return parse_playbook((CONFORMANCE / fixture["file"]).read_text())


@pytest.mark.parametrize("fixture", [f for f in FIXTURES if not f.get("needs")], ids=lambda f: f["id"])
@pytest.mark.parametrize("seed", [None, 7])
async def test_fixture_passes_in_simulator(fixture, seed):
    playbook = load(fixture)
    registry = {p.path: p for p in (parse_playbook((CONFORMANCE / f["file"]).read_text())
                                    for f in FIXTURES if not f.get("rejected_ok"))}
    out = await Simulator(registry, seed=seed).run(playbook, fixture.get("payload") or {})
    assert out.status == fixture["status"], out.error
    for step, expected in (fixture.get("steps") or {}).items():
        assert subset(expected, out.step_results.get(step)), (step, out.step_results.get(step))
    for step, expected in (fixture.get("loops") or {}).items():
        assert subset(expected, out.loop_results.get(step)), (step, out.loop_results.get(step))
    if "loop_count" in fixture:
        (step, count), = fixture["loop_count"].items() if isinstance(fixture["loop_count"], dict) else \
            [(None, fixture["loop_count"])]
        got = len(out.loop_results.get(step, [])) if step else max(len(v) for v in out.loop_results.values())
        assert got == count
    for step in fixture.get("not_run") or []:
        assert out.issued.get(step, 0) == 0, f"{step} was issued"
    for step in fixture.get("run_once") or []:
        assert out.issued.get(step, 0) == 1, f"{step} issued {out.issued.get(step, 0)} times"


@pytest.mark.parametrize("fixture", [f for f in FIXTURES if f.get("needs")], ids=lambda f: f["id"])
def test_fixture_needing_services_parses_or_is_rejected(fixture):
    try:
        load(fixture)
    except PlaybookError:
        assert fixture.get("rejected_ok"), f"{fixture['id']} was rejected but must parse"
