"""A cursor loop on NoETL's frames runtime (`spec.frame.process: frame`): one stage per loop run,
each claim one frame run as one command over its rows, carrying what its worker leases it with."""

import pytest

from noetl_common.dsl import PlaybookError
from noetl_common.engine import EmitEvent, EngineEvent, ExecutionData, IssueCommand, apply, start
from noetl_common.engine.replay import checksum, replay

from .helpers import minter, playbook, py


def issued(decisions):
    return [d for d in decisions if isinstance(d, IssueCommand)]


def emitted(decisions, kind):
    return [d for d in decisions if isinstance(d, EmitEvent) and d.event_type == kind]


def frame_step(**frame):
    return {"step": "work", "tool": {"kind": "python", "code": "result = [r['id'] for r in rows]",
                                     "input": {"rows": "{{ iter.job }}", "first": "{{ iter.job[0].id }}",
                                               "alias": "{{ iter.job_rows | length }}"}},
            "loop": {"iterator": "job", "cursor": {"kind": "postgres", "auth": "pg",
                                                   "claim": "SELECT id LIMIT {{ __frame_max_rows }}"},
                     "spec": {"mode": "cursor", "frame": {"max_rows": 2, "process": "frame", **frame}}},
            "next": [{"step": "end", "when": "{{ event.name == 'loop.done' }}"}]}


def run_two_frames(**frame):
    pb = playbook({"step": "start", "tool": py("x"), "next": "work"}, frame_step(**frame),
                  {"step": "end", "tool": py("e")}, workload={"lease": 9, "beat": 2})
    mint, data, log = minter(), ExecutionData(), []
    state, ds = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=mint, data=data)
    seen = [ds]

    def done(cmd, result):
        nonlocal state
        event = EngineEvent(kind="command_done", command_id=cmd.command_id, result=result)
        log.append((1, event))
        state, out = apply(pb, state, event, now_ms=1, mint=mint, data=data)
        seen.append(out)
        return out

    ds = done(issued(ds)[0], {})
    (claim,) = issued(ds)
    ds = done(claim, {"rows": [{"id": 1}, {"id": 2}]})
    (first,) = issued(ds)
    ds = done(first, [1, 2])
    (claim2,) = issued(ds)
    ds = done(claim2, {"rows": [{"id": 3}]})
    (second,) = issued(ds)
    ds = done(second, [3])
    ds = done(issued(ds)[0], {"rows": []})
    return pb, state, data, log, claim, claim2, first, second, seen, ds


def test_each_claim_is_one_frame_command_over_its_rows_with_its_lease():
    pb, state, data, _, claim, claim2, first, second, seen, last = run_two_frames(
        lease_seconds="{{ lease }}", heartbeat_seconds="{{ beat }}")
    # the stage is opened with the loop (named by its first claim), once per run
    (opened,) = emitted(seen[1], "stage.opened")
    assert opened.payload["stage_id"] == str(claim.command_id) and opened.payload["kind"] == "loop"
    assert opened.payload["frame_policy"]["lease_seconds"] == 9
    assert not emitted(seen[3], "stage.opened")
    # a frame's item is all its rows (NoETL's iter.<iterator>, also as <iterator>_rows)
    assert first.item == [{"id": 1}, {"id": 2}] and first.input["first"] == 1 and first.input["alias"] == 2
    assert first.frame == {"stage_id": str(claim.command_id), "frame_index": 0,
                           "worker_slot_id": str(first.command_id), "lease_seconds": 9, "heartbeat_seconds": 2.0,
                           "policy": first.frame["policy"]}
    assert second.frame["frame_index"] == 1 and second.frame["stage_id"] == str(claim.command_id)
    assert claim.frame is None and claim2.frame is None  # claims are ordinary commands
    # the loop's results are one per frame; the stage closes with it
    assert data.results["work"]["stats"] == {"total": 2, "success": 2, "failed": 0}
    (closed,) = emitted(last, "stage.closed")
    assert closed.payload == {"stage_id": str(claim.command_id), "status": "COMPLETED", "frame_count": 2}
    assert [c.step for c in issued(last)] == ["end"]


def test_the_stage_id_is_replayed():
    pb, state, data, log, *_ = run_two_frames()
    replayed, replayed_data = replay(pb, execution_id=1, workload={}, catalog_id=2, events=log, start_ms=0,
                                     mint=minter())
    assert checksum(replayed) == checksum(state) and replayed_data.checksum() == data.checksum()


def test_process_row_keeps_rows_as_iterations_without_a_stage():
    step = frame_step()
    step["loop"]["spec"]["frame"].update(process="row", row_concurrency=2)
    pb = playbook({**step, "step": "start"}, {"step": "end", "tool": py("e")})
    mint, data = minter(), ExecutionData()
    state, ds = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=mint, data=data)
    assert not emitted(ds, "stage.opened")
    state, ds = apply(pb, state, EngineEvent(kind="command_done", command_id=issued(ds)[0].command_id,
                                             result={"rows": [{"id": 1}, {"id": 2}]}), now_ms=1, mint=mint, data=data)
    assert [(c.item, c.frame) for c in issued(ds)] == [({"id": 1}, None), ({"id": 2}, None)]
    assert state.loops["start"].stage == 0


def test_a_bad_lease_fails_the_step_naming_the_field():
    pb = playbook({**frame_step(lease_seconds="{{ lease }}"), "step": "start"}, {"step": "end", "tool": py("e")},
                  workload={"lease": 2})
    _, ds = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=minter(), data=ExecutionData())
    failed = emitted(ds, "step.failed")
    assert failed and "loop.spec.frame.lease_seconds rendered to 2" in failed[0].payload["error"]


@pytest.mark.parametrize("frame, field", [({"process": "batch"}, "process"), ({"lease_seconds": 0}, "lease_seconds"),
                                          ({"heartbeat_seconds": "x"}, "heartbeat_seconds")])
def test_the_parser_refuses_a_bad_frame_policy(frame, field):
    with pytest.raises(PlaybookError, match=f"loop.spec.frame.{field}"):
        playbook({**frame_step(**frame), "step": "start"})
