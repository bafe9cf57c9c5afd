"""A sequential loop whose worker pipelines: iterations issued ahead, each `after` the one before,
released as that one ends; the same results, and a replay that decides the same."""

import asyncio

import msgspec
import pytest
from hypothesis import given, settings, strategies as st

from noetl_common.engine import EngineEvent, ExecutionData, IssueCommand, Release, apply, checksum, replay, start
from noetl_common.engine.core import AHEAD
from noetl_common.engine.simulator import Simulator

from .helpers import minter, playbook, py

N = 20
SEQ = playbook(
    {"step": "start", "tool": py("result = {'i': x, 'sq': x * x}", input={"x": "{{ item }}"}),
     "loop": {"in": "{{ xs }}", "iterator": "item", "spec": {"mode": "sequential"}}, "next": "end"},
    {"step": "end", "tool": py("result = {'n': len(s['results'])}", input={"s": "{{ start }}"})},
    workload={"xs": list(range(N))})


def issued(decisions):
    return [d for d in decisions if isinstance(d, IssueCommand)]


def done(command, *, pipelined=True, ok=True):
    if ok:
        return EngineEvent(kind="command_done", command_id=command.command_id, result={"i": command.iteration},
                           pipelined=pipelined)
    return EngineEvent(kind="command_failed", command_id=command.command_id, error="boom", pipelined=pipelined)


def begin(pb=SEQ):
    data = ExecutionData()
    mint = minter()
    state, decisions = start(pb, execution_id=1, workload={}, catalog_id=1, now_ms=0, mint=mint, data=data)
    return state, data, mint, decisions


def test_a_pipelined_outcome_issues_the_next_iterations_ahead_each_after_the_one_before():
    state, data, mint, decisions = begin()
    first = issued(decisions)
    assert [c.iteration for c in first] == [0] and first[0].after is None  # nothing ahead before a worker says so
    state, decisions = apply(SEQ, state, done(first[0]), now_ms=1, mint=mint, data=data)
    ahead = issued(decisions)
    assert [c.iteration for c in ahead] == list(range(1, 2 + AHEAD))
    assert ahead[0].after is None
    assert [c.after for c in ahead[1:]] == [c.command_id for c in ahead[:-1]]
    assert not [d for d in decisions if isinstance(d, Release)]
    # The next outcome releases the iteration after it and issues one more at the end of the chain.
    state, decisions = apply(SEQ, state, done(ahead[0]), now_ms=2, mint=mint, data=data)
    assert [d for d in decisions if isinstance(d, Release)] == [Release(command_id=ahead[1].command_id, step="start")]
    more = issued(decisions)
    assert [(c.iteration, c.after) for c in more] == [(2 + AHEAD, ahead[-1].command_id)]
    assert len(state.pending) == 1 + AHEAD


def test_an_outcome_without_pipelined_keeps_one_iteration_at_a_time():
    state, data, mint, decisions = begin()
    command = issued(decisions)[0]
    for i in range(3):
        state, decisions = apply(SEQ, state, done(command, pipelined=False), now_ms=i + 1, mint=mint, data=data)
        (command,) = issued(decisions)
        assert command.after is None and len(state.pending) == 1


@pytest.mark.parametrize("step", [
    # a tool retry must run the failed iteration again before the next one
    {"step": "start", "tool": py("result = x", input={"x": "{{ item }}"}, retry={"max_attempts": 2}),
     "loop": {"in": "{{ xs }}", "iterator": "item", "spec": {"mode": "sequential"}}},
    # a task list's ctx updates feed the scope of the next iteration
    {"step": "start", "tool": [{"name": "a", "kind": "python", "code": "result = 1"}],
     "loop": {"in": "{{ xs }}", "iterator": "item", "spec": {"mode": "sequential"}}},
    # a parallel loop has its own cap
    {"step": "start", "tool": py("result = x", input={"x": "{{ item }}"}),
     "loop": {"in": "{{ xs }}", "iterator": "item", "spec": {"mode": "parallel", "max_in_flight": 2}}},
])
def test_no_iteration_ahead_where_it_could_render_differently_or_run_out_of_order(step):
    pb = playbook(step, workload={"xs": list(range(N))})
    state, data, mint, decisions = begin(pb)
    commands = issued(decisions)
    assert all(c.after is None for c in commands)
    state, decisions = apply(pb, state, done(commands[0]), now_ms=1, mint=mint, data=data)
    assert all(c.after is None for c in issued(decisions))
    assert len(state.pending) == len(commands)


def test_no_iteration_ahead_while_another_step_is_pending():
    pb = playbook(
        {"step": "start", "tool": py("result = 1"),
         "next": {"spec": {"mode": "inclusive"}, "arcs": [{"step": "seq"}, {"step": "side"}]}},
        {"step": "seq", "tool": py("result = x", input={"x": "{{ item }}"}),
         "loop": {"in": "{{ xs }}", "iterator": "item", "spec": {"mode": "sequential"}}},
        {"step": "side", "tool": py("result = 2")},
        workload={"xs": list(range(N))})
    state, data, mint, decisions = begin(pb)
    state, decisions = apply(pb, state, done(issued(decisions)[0]), now_ms=1, mint=mint, data=data)
    seq = next(c for c in issued(decisions) if c.step == "seq")
    state, decisions = apply(pb, state, done(seq), now_ms=2, mint=mint, data=data)
    assert [(c.step, c.after) for c in issued(decisions)] == [("seq", None)]  # `side` still pending


def test_a_failed_iteration_ahead_does_not_stop_the_loop_and_lands_at_its_index():
    state, data, mint, decisions = begin()
    queue = issued(decisions)
    n = 0
    while queue:
        command = queue.pop(0)
        n += 1
        state, decisions = apply(SEQ, state, done(command, ok=command.iteration != 5), now_ms=n, mint=mint, data=data)
        queue += issued(decisions)
    results = data.results["start"]["results"]
    assert [r.get("status") == "error" for r in results] == [i == 5 for i in range(N)]
    assert state.status == "FAILED" and "iteration 5" in (state.failures[0] if state.failures else "")


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(min_value=0, max_value=10_000))
def test_pipelined_runs_give_the_same_results_and_replay_to_the_same_state(seed):
    plain = asyncio.run(Simulator(seed=seed).run(SEQ))
    sim = Simulator(seed=seed, pipelined=True)
    out = asyncio.run(sim.run(SEQ))
    assert out.status == plain.status == "COMPLETED"
    assert out.step_results == plain.step_results and out.loop_results == plain.loop_results
    assert out.loop_results["start"] == [{"i": i, "sq": i * i} for i in range(N)]
    assert any(e.pipelined for _, e in out.log)
    replayed, data = replay(SEQ, execution_id=1, workload={}, catalog_id=1, events=out.log, start_ms=0,
                            mint=minter(1_000_000))
    assert checksum(replayed) == checksum(out.state) and replayed == out.state
    assert data.checksum() == out.data.checksum()
    # The flag is what the replay decides by: halfway through, with it the chain is in flight,
    # without it one iteration.
    half = out.log[:N // 2]
    plain_half = [(n, msgspec.structs.replace(e, pipelined=False)) for n, e in half]
    with_flag, _ = replay(SEQ, execution_id=1, workload={}, catalog_id=1, events=half, start_ms=0,
                          mint=minter(1_000_000))
    without, _ = replay(SEQ, execution_id=1, workload={}, catalog_id=1, events=plain_half, start_ms=0,
                        mint=minter(1_000_000))
    assert len(with_flag.pending) == 1 + AHEAD and len(without.pending) == 1
