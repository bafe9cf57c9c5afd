"""Engine constructs, driven event by event (no worker): exact decisions and state."""

import pytest

from noetl_common.engine import EmitEvent, EngineEvent, ExecutionData, Finish, IssueCommand, StartChild, apply, start
from noetl_common.engine.simulator import Simulator

from .helpers import minter, playbook, py


def issued(decisions):
    return [d for d in decisions if isinstance(d, IssueCommand)]


def finish_of(decisions):
    found = [d for d in decisions if isinstance(d, Finish)]
    return found[0] if found else None


def done(pb, state, cmd, result, mint, data):
    return apply(pb, state, EngineEvent(kind="command_done", command_id=cmd.command_id, result=result),
                 now_ms=1, mint=mint, data=data)


def test_linear_flow_renders_inputs_and_finishes_with_end_result():
    pb = playbook({"step": "start", "tool": py("x", input={"m": "{{ msg }}"}), "next": "end"},
                  {"step": "end", "tool": {"kind": "noop"}}, workload={"msg": "hi"})
    mint = minter()
    data = ExecutionData()
    state, ds = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=mint, data=data)
    (cmd,) = issued(ds)
    assert cmd.step == "start" and cmd.input == {"m": "hi"} and cmd.tool_config["code"] == "x"
    state, ds = done(pb, state, cmd, {"v": 1}, mint, data)
    (end,) = issued(ds)
    state, ds = done(pb, state, end, {"status": "ok"}, mint, data)
    fin = finish_of(ds)
    assert fin.status == "COMPLETED" and fin.result == {"status": "ok"} and state.status == "COMPLETED"


def test_second_finishing_event_for_a_command_is_a_no_op():
    pb = playbook({"step": "start", "tool": py("x"), "next": "end"}, {"step": "end", "tool": py("y")})
    mint = minter()
    data = ExecutionData()
    state, ds = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=mint, data=data)
    (cmd,) = issued(ds)
    state, first = done(pb, state, cmd, {"a": 1}, mint, data)
    state, second = done(pb, state, cmd, {"a": 1}, mint, data)
    state, third = apply(pb, state, EngineEvent(kind="command_failed", command_id=cmd.command_id, error="late"),
                         now_ms=2, mint=mint, data=data)
    assert len(issued(first)) == 1 and second == [] and third == []


def test_exclusive_arcs_take_first_match_and_skip_the_rest():
    pb = playbook({"step": "start", "tool": py("x"), "next": {"arcs": [
                      {"step": "hot", "when": "{{ start.t > 25 }}"}, {"step": "cold"}]}},
                  {"step": "hot", "tool": py("h"), "next": "end"}, {"step": "cold", "tool": py("c"), "next": "end"},
                  {"step": "end", "tool": py("e")})
    mint = minter()
    data = ExecutionData()
    state, ds = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=mint, data=data)
    state, ds = done(pb, state, issued(ds)[0], {"t": 30}, mint, data)
    assert [c.step for c in issued(ds)] == ["hot"]
    assert EmitEvent(event_type="step.skipped", step="cold") in ds
    state, ds = done(pb, state, issued(ds)[0], {}, mint, data)
    assert [c.step for c in issued(ds)] == ["end"]  # the join on `end` did not wait for skipped `cold`


def test_inclusive_fan_out_and_fan_in_runs_join_once_after_both():
    pb = playbook({"step": "start", "tool": py("x"), "next": {"spec": {"mode": "inclusive"},
                                                             "arcs": [{"step": "a"}, {"step": "b"}]}},
                  {"step": "a", "tool": py("a"), "next": "merge"}, {"step": "b", "tool": py("b"), "next": "merge"},
                  {"step": "merge", "tool": py("m", input={"s": "{{ a.v + b.v }}"})})
    mint = minter()
    data = ExecutionData()
    state, ds = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=mint, data=data)
    state, ds = done(pb, state, issued(ds)[0], {}, mint, data)
    a, b = issued(ds)
    state, ds = done(pb, state, b, {"v": 2}, mint, data)
    assert issued(ds) == []  # merge waits for a
    state, ds = done(pb, state, a, {"v": 1}, mint, data)
    (merge,) = issued(ds)
    assert merge.step == "merge" and merge.input == {"s": 3}


def test_when_guard_false_skips_the_step():
    pb = playbook({"step": "start", "tool": py("x"), "next": "maybe"},
                  {"step": "maybe", "when": "{{ workload.go }}", "tool": py("m"), "next": "end"},
                  {"step": "end", "tool": py("e")}, workload={"go": False})
    mint = minter()
    data = ExecutionData()
    state, ds = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=mint, data=data)
    state, ds = done(pb, state, issued(ds)[0], {}, mint, data)
    assert [c.step for c in issued(ds)] == ["end"]
    assert EmitEvent(event_type="step.skipped", step="maybe", payload={"reason": "when"}) in ds


def test_parallel_loop_respects_max_in_flight_and_keeps_iteration_order():
    pb = playbook({"step": "start", "tool": py("x", input={"n": "{{ item }}"}),
                   "loop": {"in": "{{ xs }}", "iterator": "item", "spec": {"mode": "parallel", "max_in_flight": 2}}},
                  workload={"xs": [10, 20, 30]})
    mint = minter()
    data = ExecutionData()
    state, ds = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=mint, data=data)
    first = issued(ds)
    assert [c.iteration for c in first] == [0, 1] and first[1].input["n"] == 20
    state, ds = done(pb, state, first[1], "r1", mint, data)
    (third,) = issued(ds)
    assert third.iteration == 2
    state, ds = done(pb, state, third, "r2", mint, data)
    state, ds = done(pb, state, first[0], "r0", mint, data)
    fin = finish_of(ds)
    assert fin.status == "COMPLETED"
    assert fin.step_results["start"] == {"results": ["r0", "r1", "r2"],
                                         "stats": {"total": 3, "success": 3, "failed": 0}}


def test_empty_loop_completes_at_once():
    pb = playbook({"step": "start", "tool": py("x"), "loop": {"in": "{{ [] }}", "iterator": "i"}, "next": "end"},
                  {"step": "end", "tool": py("e")})
    data = ExecutionData()
    _, ds = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=minter(), data=data)
    assert [c.step for c in issued(ds)] == ["end"]


def test_unrouted_failure_fails_after_running_siblings_finish():
    pb = playbook({"step": "start", "tool": py("x"), "next": {"spec": {"mode": "inclusive"},
                                                             "arcs": [{"step": "a"}, {"step": "b"}]}},
                  {"step": "a", "tool": py("a")}, {"step": "b", "tool": py("b")})
    mint = minter()
    data = ExecutionData()
    state, ds = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=mint, data=data)
    state, ds = done(pb, state, issued(ds)[0], {}, mint, data)
    a, b = issued(ds)
    state, ds = apply(pb, state, EngineEvent(kind="command_failed", command_id=a.command_id, error="boom"),
                      now_ms=1, mint=mint, data=data)
    assert finish_of(ds) is None  # b is still running
    state, ds = done(pb, state, b, {}, mint, data)
    fin = finish_of(ds)
    assert fin.status == "FAILED" and "step 'a': boom" in fin.error


def test_failure_routed_by_an_explicit_arc_does_not_fail_the_execution():
    pb = playbook({"step": "start", "tool": py("x"), "next": {"arcs": [
                      {"step": "recover", "when": "{{ output.status == 'error' }}"}, {"step": "end"}]}},
                  {"step": "recover", "tool": py("r")}, {"step": "end", "tool": py("e")})
    mint = minter()
    data = ExecutionData()
    state, ds = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=mint, data=data)
    state, ds = apply(pb, state, EngineEvent(kind="command_failed", command_id=issued(ds)[0].command_id, error="x"),
                      now_ms=1, mint=mint, data=data)
    assert [c.step for c in issued(ds)] == ["recover"]


def test_retry_reissues_until_max_attempts():
    pb = playbook({"step": "start", "tool": py("x", retry={"max_attempts": 2})})
    mint = minter()
    data = ExecutionData()
    state, ds = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=mint, data=data)
    (c1,) = issued(ds)
    state, ds = apply(pb, state, EngineEvent(kind="command_failed", command_id=c1.command_id, error="e1"),
                      now_ms=1, mint=mint, data=data)
    (c2,) = issued(ds)
    assert c2.attempt == 2 and c2.command_id != c1.command_id
    state, ds = apply(pb, state, EngineEvent(kind="command_failed", command_id=c2.command_id, error="e2"),
                      now_ms=2, mint=mint, data=data)
    assert finish_of(ds).status == "FAILED"


def test_render_error_fails_cleanly_naming_step_and_template():
    pb = playbook({"step": "start", "tool": py("x"), "next": "bad"},
                  {"step": "bad", "tool": py("y", input={"v": "{{ oops( }}"})})
    mint = minter()
    data = ExecutionData()
    state, ds = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=mint, data=data)
    state, ds = done(pb, state, issued(ds)[0], {}, mint, data)
    fin = finish_of(ds)
    assert fin.status == "FAILED" and "step 'bad'" in fin.error and "{{ oops( }}" in fin.error


def test_cancel_finishes_and_ignores_later_events():
    pb = playbook({"step": "start", "tool": py("x")})
    mint = minter()
    data = ExecutionData()
    state, ds = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=mint, data=data)
    (cmd,) = issued(ds)
    state, ds = apply(pb, state, EngineEvent(kind="cancel"), now_ms=1, mint=mint, data=data)
    assert finish_of(ds).status == "CANCELLED"
    state, ds = done(pb, state, cmd, {}, mint, data)
    assert ds == [] and state.status == "CANCELLED"


def test_set_at_step_and_arc_level_is_visible_downstream():
    pb = playbook({"step": "start", "tool": py("x"), "set": {"ctx.n": "{{ output.v }}"},
                   "next": {"arcs": [{"step": "use", "set": {"ctx.m": "{{ start.v * 10 }}"}}]}},
                  {"step": "use", "tool": py("u", input={"n": "{{ ctx.n }}", "m": "{{ m }}"})})
    mint = minter()
    data = ExecutionData()
    state, ds = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=mint, data=data)
    state, ds = done(pb, state, issued(ds)[0], {"v": 4}, mint, data)
    assert issued(ds)[0].input == {"n": 4, "m": 40}


def test_sub_playbook_waits_for_the_child():
    pb = playbook({"step": "start", "tool": {"kind": "playbook", "path": "lib/child", "input": {"k": 1}},
                   "next": "end"}, {"step": "end", "tool": py("e", input={"r": "{{ start.result.v }}"})})
    mint = minter()
    data = ExecutionData()
    state, ds = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=mint, data=data)
    (child,) = [d for d in ds if isinstance(d, StartChild)]
    assert child.path == "lib/child" and child.workload == {"k": 1}
    state, ds = apply(pb, state, EngineEvent(kind="child_done", command_id=child.command_id,
                                             result={"status": "COMPLETED", "result": {"v": 9}}), now_ms=1, mint=mint, data=data)
    assert issued(ds)[0].input == {"r": 9}


async def test_simulated_pipeline_with_retry_policy_and_prev():
    pb = playbook({"step": "start", "tool": [
        {"name": "flaky", "kind": "python", "input": {"a": "{{ _attempt }}"},
         "code": "assert a >= 2, 'not yet'\nresult = {'n': a}",
         "spec": {"policy": {"rules": [{"when": "{{ output.status == 'error' }}",
                                        "then": {"do": "retry", "attempts": 3, "delay": 0}},
                                       {"else": {"then": {"do": "continue", "set": {"ctx.seen": "{{ output.data.n }}"}}}}]}}},
        {"name": "after", "kind": "python", "input": {"p": "{{ _prev.n }}"}, "code": "result = {'p': p}"}],
        "next": "end"}, {"step": "end", "tool": py("result = {'seen': seen}", input={"seen": "{{ ctx.seen }}"})})
    out = await Simulator().run(pb)
    assert out.status == "COMPLETED", out.error
    assert out.step_results["start"]["p"] == 2 and out.step_results["end"] == {"seen": 2}


def test_pipeline_outcome_of_noetls_task_sequence_reads_as_ours():
    # NoETL's Python worker runs a task list as its task_sequence: {status, _prev, results, ctx}.
    pb = playbook({"step": "start", "tool": [{"name": "a", "kind": "python", "code": "x"},
                                             {"name": "b", "kind": "python", "code": "y"}], "next": "end"},
                  {"step": "end", "tool": py("e", input={"last": "{{ start.v }}", "a": "{{ start.results.a.n }}",
                                                         "seen": "{{ ctx.seen }}"})})
    mint = minter()
    data = ExecutionData()
    state, ds = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=mint, data=data)
    outcome = {"status": "ok", "_prev": {"v": 2}, "results": {"a": {"n": 1}, "b": {"v": 2}}, "ctx": {"seen": 7},
               "metrics": {"task_count": 2}}
    state, ds = done(pb, state, issued(ds)[0], outcome, mint, data)
    assert issued(ds)[0].input == {"last": 2, "a": 1, "seen": 7}


def test_output_select_keeps_the_named_fields_and_the_reference_of_a_stored_result():
    # the shard gives the engine a stored result with `_ref`/`_store` (step_results.with_ref); a
    # step's `output.output_select` keeps only those fields of it, as NoETL does
    pb = playbook({"step": "big", "tool": [{"name": "gen", "kind": "python", "code": "x"}],
                   "output": {"output_select": ["count", "absent"]}, "next": "small"},
                  {"step": "small", "tool": py("y"), "output": {"output_select": ["count"]}, "next": "end"},
                  {"step": "end", "tool": py("e", input={"count": "{{ big.count }}", "ref": "{{ big._ref.ref }}",
                                                         "kept": "{{ big.rows is defined }}",
                                                         "small": "{{ small.rows }}"})})
    mint = minter()
    data = ExecutionData()
    state, ds = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=mint, data=data)
    ref = {"kind": "result_ref", "ref": "noetl://execution/1/result/big/9"}
    envelope = {"result": {"count": 2, "rows": [1, 2]}, "tasks": {"gen": {"count": 2, "rows": [1, 2]}},
                "ctx_updates": {}, "_ref": ref, "_store": "db"}
    state, ds = done(pb, state, issued(ds)[0], envelope, mint, data)
    assert data.results["big"] == {"count": 2, "_ref": ref, "_store": "db"}
    state, ds = done(pb, state, issued(ds)[0], {"count": 1, "rows": [1]}, mint, data)  # inline: kept whole
    assert issued(ds)[0].input == {"count": 2, "ref": ref["ref"], "kept": False, "small": [1]}


CURSOR_STEP = {"step": "work", "tool": {"kind": "postgres", "auth": "pg", "command": "UPDATE t SET n = {{ row.id }}"},
               "loop": {"iterator": "row", "cursor": {"kind": "postgres", "auth": "{{ workload.cred }}",
                                                      "claim": "SELECT id LIMIT {{ __frame_max_rows }}"},
                        "spec": {"mode": "cursor", "frame": {"max_rows": 2, "row_concurrency": 2}}},
               "next": [{"step": "end", "when": "{{ event.name == 'loop.done' }}"}]}


def test_cursor_loop_claims_frames_until_a_claim_returns_no_rows():
    pb = playbook({"step": "start", "tool": py("x"), "next": "work"}, CURSOR_STEP, {"step": "end", "tool": py("e")},
                  workload={"cred": "pg_local"})
    mint = minter()
    data = ExecutionData()
    state, ds = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=mint, data=data)
    state, ds = done(pb, state, issued(ds)[0], {}, mint, data)
    (claim,) = issued(ds)
    assert claim.tool_kind == "postgres" and claim.iteration is None
    assert claim.tool_config == {"auth": "pg_local", "command": "SELECT id LIMIT 2"}
    state, ds = done(pb, state, claim, {"columns": ["id"], "rows": [{"id": 1}, {"id": 2}], "row_count": 2}, mint, data)
    bodies = issued(ds)
    assert [(c.iteration, c.tool_config["command"]) for c in bodies] == [(0, "UPDATE t SET n = 1"),
                                                                        (1, "UPDATE t SET n = 2")]
    state, ds = done(pb, state, bodies[1], "b1", mint, data)
    assert not issued(ds), "the next frame waits for the whole frame"
    state, ds = done(pb, state, bodies[0], "b0", mint, data)
    (claim2,) = issued(ds)
    assert claim2.tool_config["command"] == "SELECT id LIMIT 2"
    state, ds = done(pb, state, claim2, {"rows": [{"id": 3}]}, mint, data)
    (third,) = issued(ds)
    assert third.iteration == 2 and third.input["row"] == {"id": 3}
    state, ds = done(pb, state, third, "b2", mint, data)
    state, ds = done(pb, state, issued(ds)[0], {"rows": []}, mint, data)
    assert [c.step for c in issued(ds)] == ["end"]
    assert data.results["work"] == {"results": ["b0", "b1", "b2"], "stats": {"total": 3, "success": 3, "failed": 0}}


def test_cursor_loop_failed_claim_fails_the_step():
    pb = playbook({**CURSOR_STEP, "step": "start"}, {"step": "end", "tool": py("e")}, workload={"cred": "pg"})
    mint = minter()
    data = ExecutionData()
    state, ds = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=mint, data=data)
    (claim,) = issued(ds)
    state, ds = apply(pb, state, EngineEvent(kind="command_failed", command_id=claim.command_id, error="no table"),
                      now_ms=0, mint=mint, data=data)
    fin = finish_of(ds)
    assert fin.status == "FAILED" and "cursor claim failed: no table" in fin.error


def test_older_spellings_outputs_job_and_command_0_render():
    pb = playbook({"step": "start", "tool": {"kind": "postgres", "auth": "pg", "command": "SELECT 1 AS n"},
                   "next": "end"},
                  {"step": "end", "tool": py("x", input={"a": "{{ outputs.start.rows[0].n }}",
                                                         "b": "{{ start.command_0.row_count }}",
                                                         "c": "{{ job.execution_id }}"})})
    mint = minter()
    data = ExecutionData()
    state, ds = start(pb, execution_id=77, workload={}, catalog_id=2, now_ms=0, mint=mint, data=data)
    state, ds = done(pb, state, issued(ds)[0], {"columns": ["n"], "rows": [{"n": 5}], "row_count": 1}, mint, data)
    assert issued(ds)[0].input == {"a": 5, "b": 1, "c": "77"}


@pytest.mark.parametrize(("n", "fired"), [(5, ["a", "b"]), (1, ["c"]), (-1, ["d"])])
def test_older_when_then_else_fires_the_first_true_branch_with_all_its_targets(n, fired):
    pb = playbook({"step": "start", "tool": py("x"),
                   "next": [{"when": "{{ n > 2 }}", "then": [{"step": "a"}, "b"]},
                            {"when": "n > 0", "then": ["c"]},
                            {"else": [{"step": "d"}]}]},
                  *({"step": s, "tool": py(s)} for s in "abcd"), workload={"n": n})
    mint = minter()
    data = ExecutionData()
    state, ds = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=mint, data=data)
    state, ds = done(pb, state, issued(ds)[0], {}, mint, data)
    assert sorted(c.step for c in issued(ds)) == fired


def test_python_code_that_reads_context_gets_the_execution_context_and_other_code_none():
    pb = playbook({"step": "start", "tool": {"kind": "postgres", "auth": "pg", "command": "SELECT 1 AS n"},
                   "next": "reads"},
                  {"step": "reads", "tool": py("rows = context.get('start')['command_0']['rows']"), "next": "end"},
                  {"step": "end", "tool": py("result = {'contextual': False}")}, workload={"token": "t"})
    mint = minter()
    data = ExecutionData()
    state, ds = start(pb, execution_id=7, workload={}, catalog_id=2, now_ms=0, mint=mint, data=data)
    state, ds = done(pb, state, issued(ds)[0], {"columns": ["n"], "rows": [{"n": 5}], "row_count": 1}, mint, data)
    (reads,) = issued(ds)
    assert reads.context["token"] == "t" and reads.context["start"]["command_0"]["rows"] == [{"n": 5}]
    assert "keychain" not in reads.context
    state, ds = done(pb, state, reads, {"ok": True}, mint, data)
    assert issued(ds)[0].context is None


def test_arcs_see_noetl_event_names_call_done_and_call_error():
    # NoETL's server routes a finished call on `call.done` and a failed one on `call.error`;
    # playbooks (quantum_cudaq) guard their arcs with those names
    pb = playbook({"step": "start", "tool": py("x"), "next": [{"step": "save", "when": "{{ event.name == 'call.done' }}"}]},
                  {"step": "save", "tool": py("s"), "next": [{"step": "end", "when": "{{ event.name == 'call.error' }}"}]},
                  {"step": "end", "tool": py("e")})
    mint = minter()
    data = ExecutionData()
    state, ds = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=mint, data=data)
    state, ds = done(pb, state, issued(ds)[0], {"ok": True}, mint, data)
    (save,) = issued(ds)
    assert save.step == "save"
    state, ds = apply(pb, state, EngineEvent(kind="command_failed", command_id=save.command_id, error="boom"),
                      now_ms=2, mint=mint, data=data)
    (end,) = issued(ds)
    assert end.step == "end"
