"""State holds only control data; results and loop data go through ExecutionData's journal."""

import msgspec
import pytest

from noetl_common.engine import (EngineEvent, ExecutionData, IssueCommand, LoopItems, LoopResult, StepResult, apply,
                                 start)

from .helpers import minter, playbook, py


def loop_pb(mode="sequential", **loop):
    return playbook({"step": "start", "tool": py("x"), "next": "work"},
                    {"step": "work", "tool": py("w", input={"i": "{{ i }}"}),
                     "loop": {"in": "{{ n }}", "iterator": "i", "spec": {"mode": mode}, **loop}, "next": "end"},
                    {"step": "end", "tool": py("e")}, workload={"n": 3})


def ok(pb, state, data, cmd, result, mint):
    state, ds = apply(pb, state, EngineEvent(kind="command_done", command_id=cmd.command_id, result=result),
                      now_ms=1, mint=mint, data=data)
    return state, [d for d in ds if isinstance(d, IssueCommand)]


def state_sizes(n, at):
    """Encoded State size after each event index in `at`, driving a sequential loop of n."""
    pb = playbook({"step": "start", "tool": py("x", input={"i": "{{ i }}"}),
                   "loop": {"in": "{{ n }}", "iterator": "i", "spec": {"mode": "sequential"}}})
    mint, data = minter(), ExecutionData()
    state, ds = start(pb, execution_id=1, workload={"n": n}, catalog_id=2, now_ms=0, mint=mint, data=data)
    sizes = {}
    for event in range(1, n + 1):
        (cmd,) = [d for d in ds if isinstance(d, IssueCommand)]
        state, ds = apply(pb, state, EngineEvent(kind="command_done", command_id=cmd.command_id,
                                                 result={"i": cmd.iteration, "pad": "x" * 50}),
                          now_ms=event, mint=mint, data=data)
        data.take_journal()
        if event in at:
            sizes[event] = len(msgspec.msgpack.encode(state))
    return [sizes[e] for e in at]


def test_state_size_does_not_grow_with_loop_length():
    small = state_sizes(10, (5, 9))
    large = state_sizes(10_000, (5_000, 9_999))
    # Same control data; only integer widths (n, counters, command ids) differ, by a few bytes each.
    for a, b in zip(small, large):
        assert abs(a - b) <= 16, (small, large)
    assert max(large) < 400


def test_journal_one_row_per_write():
    pb = loop_pb()
    mint, data = minter(), ExecutionData()
    state, ds = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=mint, data=data)
    assert data.take_journal() == []
    state, (first,) = ok(pb, state, data, [d for d in ds if isinstance(d, IssueCommand)][0], {"s": 1}, mint)
    run = state.loops["work"].run
    # `start` finished and the loop started: its result and the loop's whole collection, one row each.
    assert data.take_journal() == [StepResult(step="start", value={"s": 1}),
                                   LoopItems(step="work", run=run, offset=0, items=[0, 1, 2])]
    state, (second,) = ok(pb, state, data, first, "r0", mint)
    assert data.take_journal() == [LoopResult(step="work", run=run, index=0, value="r0")]
    state, (third,) = ok(pb, state, data, second, "r1", mint)
    assert data.take_journal() == [LoopResult(step="work", run=run, index=1, value="r1")]
    state, (end,) = ok(pb, state, data, third, "r2", mint)
    aggregate = {"results": ["r0", "r1", "r2"], "stats": {"total": 3, "success": 3, "failed": 0}}
    assert data.take_journal() == [LoopResult(step="work", run=run, index=2, value="r2"),
                                   StepResult(step="work", value=aggregate)]
    assert "work" not in state.loops and data.checksum() == ExecutionData(data.results).checksum()


def test_from_rows_rebuilds_equal_data_mid_loop():
    pb = loop_pb("parallel")
    mint, data = minter(), ExecutionData()
    state, ds = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=mint, data=data)
    state, cmds = ok(pb, state, data, [d for d in ds if isinstance(d, IssueCommand)][0], {"s": 1}, mint)
    state, _ = ok(pb, state, data, cmds[1], "r1", mint)
    writes = data.take_journal()
    rebuilt = ExecutionData.from_rows([(w.step, w.value) for w in writes if isinstance(w, StepResult)],
                                      [(w.step, w.run, w.offset, w.items) for w in writes if isinstance(w, LoopItems)],
                                      [(w.step, w.run, w.index, w.value) for w in writes if isinstance(w, LoopResult)])
    assert rebuilt.checksum() == data.checksum() and rebuilt.results == data.results
    run = state.loops["work"].run
    assert rebuilt.loop_results("work", run, 3) == [None, "r1", None] and rebuilt.item("work", run, 2) == 2
    assert rebuilt.take_journal() == []  # loading is not a write


def test_from_rows_puts_cursor_frames_in_offset_order_and_rejects_a_gap():
    frames = [("c", 1, 2, ["z"]), ("c", 1, 0, ["x", "y"])]
    data = ExecutionData.from_rows([], frames, [("c", 1, 2, "Z")])
    assert [data.item("c", 1, i) for i in range(3)] == ["x", "y", "z"]
    assert data.loop_results("c", 1, 3) == [None, None, "Z"]
    with pytest.raises(ValueError, match="offset 2, expected 0"):
        ExecutionData.from_rows([], [("c", 1, 2, ["z"])], [])


def test_checksum_covers_running_loops_and_forgets_ended_ones():
    a, b = ExecutionData(), ExecutionData()
    for d in (a, b):
        d.start_loop("l", 1, [1, 2])
    a.set_loop_result("l", 1, 0, "r")
    assert a.checksum() != b.checksum()
    b.set_loop_result("l", 1, 0, "r")
    assert a.checksum() == b.checksum()
    a.end_loop("l", 1)
    assert a.checksum() == ExecutionData().checksum() and a.take_journal()[-1] == LoopResult("l", 1, 0, "r")


def test_retried_iteration_reads_its_item_from_data():
    pb = playbook({"step": "start", "tool": py("x", input={"v": "{{ it }}"}, retry={"max_attempts": 2}),
                   "loop": {"in": "{{ ['a', 'b'] }}", "iterator": "it", "spec": {"mode": "parallel"}}})
    mint, data = minter(), ExecutionData()
    state, ds = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=mint, data=data)
    second = [d for d in ds if isinstance(d, IssueCommand)][1]
    state, ds = apply(pb, state, EngineEvent(kind="command_failed", command_id=second.command_id, error="e"),
                      now_ms=1, mint=mint, data=data)
    (retry,) = [d for d in ds if isinstance(d, IssueCommand)]
    assert (retry.iteration, retry.item, retry.input["v"], retry.attempt) == (1, "b", "b", 2)


def test_failed_iterations_fail_the_step_naming_the_first_from_data():
    pb = playbook({"step": "start", "tool": py("x"),
                   "loop": {"in": "{{ 3 }}", "iterator": "i", "spec": {"mode": "parallel"}}})
    mint, data = minter(), ExecutionData()
    state, ds = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=mint, data=data)
    c0, c1, c2 = [d for d in ds if isinstance(d, IssueCommand)]
    for cmd, err in ((c2, "late"), (c1, "early")):
        state, _ = apply(pb, state, EngineEvent(kind="command_failed", command_id=cmd.command_id, error=err),
                         now_ms=1, mint=mint, data=data)
    state, ds = apply(pb, state, EngineEvent(kind="command_done", command_id=c0.command_id, result=0),
                      now_ms=1, mint=mint, data=data)
    assert state.status == "FAILED" and "2 of 3 iteration(s) failed; iteration 1: early" in ds[-1].error
    assert data.results["start"]["stats"] == {"total": 3, "success": 1, "failed": 2}


def test_loop_reentered_through_a_cycle_gets_a_new_run():
    pb = playbook({"step": "start", "tool": py("x"), "next": "work"},
                  {"step": "work", "tool": py("w"), "loop": {"in": "{{ 1 }}", "iterator": "i"},
                   "next": {"arcs": [{"step": "work", "when": "{{ ctx.again }}", "set": {"ctx.again": False}},
                                     {"step": "end"}]}},
                  {"step": "end", "tool": py("e")}, workload={"again": True})
    mint, data = minter(), ExecutionData()
    state, ds = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=mint, data=data)
    state, (w1,) = ok(pb, state, data, [d for d in ds if isinstance(d, IssueCommand)][0], None, mint)
    first_run = state.loops["work"].run
    state, (w2,) = ok(pb, state, data, w1, "one", mint)
    assert w2.step == "work" and state.loops["work"].run == first_run + 1 == state.loop_runs
    state, (end,) = ok(pb, state, data, w2, "two", mint)
    assert end.step == "end" and data.results["work"]["results"] == ["two"]
