"""replay(log) == incremental state, for any order in which parallel work completes."""

import asyncio

from hypothesis import given, settings, strategies as st

from noetl_common.engine import checksum, replay
from noetl_common.engine.simulator import Simulator

from .helpers import playbook, py

PB = playbook(
    {"step": "start", "tool": py("result = {'n': 1}"), "next": {"spec": {"mode": "inclusive"},
                                                                  "arcs": [{"step": "fan"}, {"step": "side"}]}},
    {"step": "fan", "tool": py("result = {'sq': x * x}", input={"x": "{{ item }}"}),
     "loop": {"in": "{{ xs }}", "iterator": "item", "spec": {"mode": "parallel", "max_in_flight": 3}},
     "next": "join"},
    {"step": "side", "tool": py("result = {'s': 1}"), "set": {"ctx.side": "{{ output.s }}"}, "next": "join"},
    {"step": "join", "tool": py("result = {'total': sum(r['sq'] for r in fan['results'])}", input={"fan": "{{ fan }}"})},
    workload={"xs": list(range(8))})


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(min_value=0, max_value=10_000))
def test_replay_equals_incremental_state(seed):
    sim = Simulator(seed=seed)
    out = asyncio.run(sim.run(PB))
    assert out.status == "COMPLETED" and out.step_results["join"] == {"total": sum(i * i for i in range(8))}
    ids = iter(range(1_000_000, 1_000_000 + 10_000))  # the simulator mints from the same start
    replayed = replay(PB, execution_id=1, workload={}, catalog_id=1, events=out.log, start_ms=0,
                      mint=lambda: next(ids))
    assert checksum(replayed) == checksum(out.state)
    assert replayed == out.state


def test_checksum_is_stable_and_sensitive():
    out = asyncio.run(Simulator(seed=1).run(PB))
    again = asyncio.run(Simulator(seed=1).run(PB))
    assert checksum(out.state) == checksum(again.state)
    changed = asyncio.run(Simulator(seed=1).run(PB, {"xs": [1, 2]}))
    assert checksum(changed.state) != checksum(out.state)
