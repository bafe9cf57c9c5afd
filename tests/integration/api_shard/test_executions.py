"""Execution routes on a real shard database, with the test acting as the worker over HTTP."""

from __future__ import annotations

import asyncio
import base64
from datetime import datetime

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from noetl_api_shard.app import create_app
from noetl_common.sharding import shard_for

from .conftest import make_settings

PLAYBOOK = b"""
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: two_steps, path: tests/two_steps}
workload: {n: 2}
workflow:
  - step: start
    tool: {kind: python, input: {n: "{{ n }}"}, code: "result = {'double': n * 2}"}
    next: [{step: end}]
  - step: end
    tool: {kind: python, input: {d: "{{ start.double }}"}, code: "result = {'final': d}"}
"""


def settings_with_lease(dbs, lease_seconds: float):
    return msgspec.structs.replace(make_settings(dbs), claim_lease_seconds=lease_seconds, reaper_interval_seconds=3600)


async def register(c):
    r = await c.post("/api/catalog/register", json={"content": base64.b64encode(PLAYBOOK).decode()})
    assert r.status == 200


@pytest.fixture
async def client(database_factory):
    async with TestClient(TestServer(create_app(settings_with_lease(await database_factory(), 0.5)))) as c:
        await register(c)
        yield c


async def start(c, **body):
    r = await c.post("/api/execute", json={"path": "tests/two_steps", **body})
    assert r.status == 200, await r.text()
    return await r.json()


async def open_command(c, execution_id):
    events = (await (await c.get(f"/api/executions/{execution_id}/events")).json())["events"]
    issued = [e for e in events if e["event_type"] == "command.issued"]  # newest first
    return issued[0]["event_id"], issued[0]["node_name"]


async def finish(c, execution_id, command_id, result, worker="w1", kind="call.done"):
    r = await c.post("/api/events", json={"execution_id": execution_id, "name": kind, "node_name": "x",
                                         "worker_id": worker, "payload": {"command_id": command_id, "result": result}})
    assert r.status == 200, await r.text()
    return await r.json()


async def test_run_to_completion_with_exactly_once_finishing(client):
    c = client
    started = await start(c, workload={"n": 5})
    eid = started["execution_id"]
    assert started["status"] == "started" and started["commands_generated"] == 1
    assert shard_for(int(eid), 1) == 0
    cid, step = await open_command(c, eid)
    command = await (await c.get(f"/api/commands/{cid}")).json()
    assert step == "start" and command["action"] == "python" and command["context"]["input"] == {"n": 5}
    # The command.issued event logs NoETL's context shape; the command itself keeps all a worker reads.
    events = (await (await c.get(f"/api/executions/{eid}/events")).json())["events"]
    issued = next(e for e in events if e["event_type"] == "command.issued")
    assert set(issued["context"]) == {"tool_config", "args", "render_context"}
    assert issued["context"]["args"] == command["context"]["args"] and "tool" in command["context"]

    r = await c.post(f"/api/commands/{cid}/claim", json={"worker_id": "w1"})
    assert r.status == 200 and (await r.json())["execution_id"] == int(eid)
    r = await c.post(f"/api/commands/{cid}/claim", json={"worker_id": "w2"})
    assert r.status == 409 and (await r.json())["code"] == "active_claim"
    r = await c.post(f"/api/commands/{cid}/claim", json={"worker_id": "w1"})  # NoETL: taken, whoever asks
    assert r.status == 409 and (await r.json())["detail"]["code"] == "active_claim"

    first = await finish(c, eid, cid, {"double": 10})
    again = await finish(c, eid, cid, {"double": 10})
    late = await finish(c, eid, cid, None, kind="command.completed")
    assert first["commands_generated"] == 1 and again["duplicate"] and late["commands_generated"] == 0
    end_id, end_step = await open_command(c, eid)
    assert end_step == "end"
    await c.post(f"/api/commands/{end_id}/claim", json={"worker_id": "w1"})
    await finish(c, eid, end_id, {"final": 10})

    status = await (await c.get(f"/api/executions/{eid}/status", params={"steps": "true"})).json()
    assert status["status"] == "COMPLETED" and status["completed"] and status["result"] == {"final": 10}
    assert status["steps"]["start"] == {"double": 10} and status["issued"] == {"start": 1, "end": 1}
    r = await c.post(f"/api/commands/{cid}/claim", json={"worker_id": "w3"})
    assert r.status == 409 and (await r.json())["code"] == "already_terminal"
    replay = await (await c.get("/api/replay/state", params={"execution_id": eid})).json()
    assert replay["matches"] and replay["checksum"] == replay["stored_checksum"]
    listed = await (await c.get("/api/executions")).json()
    assert [e["execution_id"] for e in listed] == [eid] and listed[0]["status"] == "COMPLETED"
    events = (await (await c.get(f"/api/executions/{eid}/events")).json())["events"]
    terminal = [e for e in events if e["event_type"] == "playbook.completed"]
    assert len(terminal) == 1
    # NoETL's order and durations: newest first; a step.exit's milliseconds since its step.enter,
    # the terminal event's since the start, 0 for the rest.
    ids = [int(e["event_id"]) for e in events]
    assert ids == sorted(ids, reverse=True) and events[0]["event_type"] == "playbook.completed"
    started_at = datetime.fromisoformat(events[-1]["created_at"])
    assert events[-1]["event_type"] == "playbook.initialized" and events[-1]["duration"] == 0
    assert terminal[0]["duration"] == pytest.approx(
        (datetime.fromisoformat(terminal[0]["created_at"]) - started_at).total_seconds() * 1000) and terminal[0]["duration"] > 0
    for exit_ in (e for e in events if e["event_type"] == "step.exit"):
        enter = next(e for e in events if e["event_type"] == "step.enter" and e["node_name"] == exit_["node_name"])
        assert exit_["duration"] == pytest.approx((datetime.fromisoformat(exit_["created_at"])
                                                   - datetime.fromisoformat(enter["created_at"])).total_seconds() * 1000)
    assert {e["duration"] for e in events if e["event_type"] == "command.issued"} == {0}


async def test_resent_event_id_returns_the_original(client):
    eid = (await start(client))["execution_id"]
    body = {"execution_id": int(eid), "event_type": "worker.note", "step": "start", "event_id": 4242,
            "context": {"n": 1}}
    first = await (await client.post("/api/events", json=body)).json()
    again = await (await client.post("/api/events", json={**body, "context": {"n": 2}})).json()
    assert first["event_id"] == again["event_id"] == 4242 and again["duplicate"] and not first["duplicate"]
    events = (await (await client.get(f"/api/executions/{eid}/events")).json())["events"]
    assert [e["event_type"] for e in events].count("worker.note") == 1


async def test_failure_fails_the_execution_and_names_the_step(client):
    eid = (await start(client))["execution_id"]
    cid, _ = await open_command(client, eid)
    r = await client.post("/api/events", json={"execution_id": eid, "event_type": "call.error", "step": "start",
                                              "context": {"command_id": cid, "error": "ZeroDivisionError: boom"}})
    assert r.status == 200
    status = await (await client.get(f"/api/executions/{eid}/status")).json()
    assert status["status"] == "FAILED" and "step 'start'" in status["error"] and "boom" in status["error"]


async def test_expired_lease_is_taken_over_then_attempts_run_out(client):
    eid = (await start(client))["execution_id"]
    cid, _ = await open_command(client, eid)
    assert (await client.post(f"/api/commands/{cid}/claim", json={"worker_id": "dead"})).status == 200
    await asyncio.sleep(0.7)
    r = await client.post(f"/api/commands/{cid}/claim", json={"worker_id": "alive"})
    assert r.status == 200 and (await r.json())["attempt"] == 2
    await asyncio.sleep(0.7)
    assert (await client.post(f"/api/commands/{cid}/claim", json={"worker_id": "third"})).status == 200
    await asyncio.sleep(0.7)
    r = await client.post(f"/api/commands/{cid}/claim", json={"worker_id": "fourth"})
    assert r.status == 409  # 3 attempts used: the step fails
    status = await (await client.get(f"/api/executions/{eid}/status")).json()
    assert status["status"] == "FAILED" and "attempt(s) exhausted" in status["error"]


async def test_cancel_and_cancellation_check(client):
    eid = (await start(client))["execution_id"]
    r = await client.post(f"/api/executions/{eid}/cancel", json={"cascade": True})
    body = await r.json()
    assert r.status == 200 and body["status"] == "cancelled" and body["cancelled_executions"] == [eid]
    check = await (await client.get(f"/api/executions/{eid}/cancellation-check")).json()
    assert check["cancelled"] and check["status"] == "CANCELLED"
    again = await (await client.post(f"/api/executions/{eid}/cancel", json={})).json()
    assert again["status"] == "already_completed"
    cid, _ = await open_command(client, eid)
    assert (await client.post(f"/api/commands/{cid}/claim", json={"worker_id": "w"})).status == 409
    replay = await (await client.get("/api/replay/state", params={"execution_id": eid})).json()
    assert replay["matches"]


async def test_stop_is_cancel_without_a_body(client):
    """NoETL's web UI posts Stop with no body."""
    eid = (await start(client))["execution_id"]
    r = await client.post(f"/api/executions/{eid}/stop")
    body = await r.json()
    assert r.status == 200 and body["status"] == "cancelled" and body["cancelled_executions"] == [eid]
    assert (await (await client.get(f"/api/executions/{eid}/status")).json())["status"] == "CANCELLED"
    assert (await (await client.post(f"/api/executions/{eid}/stop")).json())["status"] == "already_completed"
    assert (await client.post("/api/executions/12345/stop")).status == 404


async def test_variables(client):
    eid = (await start(client))["execution_id"]
    r = await client.post(f"/api/vars/{eid}", json={"variables": {"a": 1, "b": {"x": [1]}}})
    assert (await r.json())["var_names"] == ["a", "b"]
    one = await (await client.get(f"/api/vars/{eid}/b")).json()
    assert one["value"] == {"x": [1]} and one["access_count"] == 1
    assert (await (await client.get(f"/api/vars/{eid}")).json())["count"] == 2
    assert (await client.delete(f"/api/vars/{eid}/a")).status == 200
    assert (await client.get(f"/api/vars/{eid}/a")).status == 404
    r = await client.post(f"/api/vars/{eid}", json={"variables": {"a": 1}, "var_type": "bogus"})
    assert r.status == 422 and "var_type" in (await r.json())["error"]


async def test_a_variable_may_be_null(client):
    # Found by fuzzing: a JSON null value reached the NOT NULL column as SQL NULL, a 500.
    eid = (await start(client))["execution_id"]
    r = await client.post(f"/api/vars/{eid}", json={"variables": {"0": None, "7": None}})
    assert r.status == 200, await r.text()
    one = await (await client.get(f"/api/vars/{eid}/0")).json()
    assert one["value"] is None and one["var_name"] == "0"
    listed = await (await client.get(f"/api/vars/{eid}")).json()
    assert listed["count"] == 2 and listed["variables"]["7"]["value"] is None


@pytest.mark.parametrize(("method", "path", "body", "status", "needle"), [
    ("post", "/api/execute", {}, 422, "path or catalog_id"),
    ("post", "/api/execute", {"path": "no/such"}, 404, "no/such"),
    ("post", "/api/execute", {"path": "tests/two_steps", "resource_kind": "dataset"}, 422, "not executable"),
    ("post", "/api/execute", {"catalog_id": "abc"}, 400, "catalog_id"),
    ("post", "/api/execute", {"path": "tests/two_steps", "version": "99999999999"}, 400, "version"),  # past int4
    ("post", "/api/events", {"execution_id": "x1", "name": "call.done"}, 400, "execution_id"),
    ("post", "/api/events", {"execution_id": "1", "name": "call.done"}, 404, "not found"),
    ("post", "/api/events", {"execution_id": "1"}, 400, "event_type"),
    ("post", "/api/events/batch", {"execution_id": "1", "events": []}, 422, "$.events"),  # BatchRequest's bound
    ("post", "/api/events", {"name": "call.done"}, 422, "`execution_id`"),
    ("get", "/api/executions/abc", None, 400, "execution_id"),
    ("get", "/api/executions/12345", None, 404, "not found"),
    ("get", "/api/commands/12345", None, 404, "not found"),
    ("post", "/api/commands/12345/claim", {}, 422, "worker_id"),
    ("get", "/api/replay/state", None, 400, "execution_id"),
    ("get", "/api/executions?status=WEIRD", None, 400, "status"),
    ("get", "/api/executions?cursor=zzz", None, 400, "cursor"),
])
async def test_bad_input_is_a_clear_4xx(client, method, path, body, status, needle):
    r = await getattr(client, method)(path, json=body) if body is not None else await getattr(client, method)(path)
    payload = await r.json()
    assert r.status == status and needle in payload["error"], payload


async def test_malformed_json_writes_nothing(client):
    r = await client.post("/api/execute", data=b'{"path": ')
    assert r.status == 400
    assert await (await client.get("/api/executions")).json() == []


async def test_ids_of_another_shard_are_refused_with_421(database_factory):
    settings = msgspec.structs.replace(make_settings(await database_factory(), shard_index=0, shard_count=2))
    async with TestClient(TestServer(create_app(settings))) as c:
        foreign = next(i for i in range(1, 100) if shard_for(i, 2) == 1)
        r = await c.get(f"/api/executions/{foreign}")
        body = await r.json()
        assert r.status == 421 and body["owner_shard"] == 1


async def test_projection_folds_published_events_idempotently(client):
    from .conftest import INTERNAL_TOKEN
    auth = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}
    eid = (await start(client))["execution_id"]
    for _ in range(2):  # start, then end
        cid, _ = await open_command(client, eid)
        await client.post(f"/api/commands/{cid}/claim", json={"worker_id": "w1"})
        await finish(client, eid, cid, {"double": 4})
    claimed = await (await client.post("/api/internal/outbox/claim?limit=1000", headers=auth)).json()
    # One message per transaction, carrying all of its events.
    envelopes = [e for m in claimed["items"] if m["subject"].startswith("noetl.events.") for e in m["payload"]["events"]]
    # Newest half first, then everything (a crashed projector's batch comes back late): each once.
    late = await (await client.post("/api/internal/events/project", json={"events": envelopes[len(envelopes) // 2:]},
                                    headers=auth)).json()
    first = await (await client.post("/api/internal/events/project", json={"events": envelopes}, headers=auth)).json()
    again = await (await client.post("/api/internal/events/project", json={"events": envelopes}, headers=auth)).json()
    assert late["projected"] + first["projected"] == len(envelopes)
    assert again == {"projected": 0, "duplicates": len(envelopes)}
    app = client.server.app
    from noetl_api_shard.state import SERVICES
    pool = app[SERVICES].shard_pool
    summary = await pool.fetchrow("SELECT status, event_count, path, step_count FROM noetl.execution_summary "
                                  "WHERE execution_id = $1", int(eid))
    assert summary["status"] == "COMPLETED" and summary["event_count"] == len(envelopes)
    assert summary["path"] == "tests/two_steps" and summary["step_count"] == 2
    steps = await pool.fetch("SELECT step, status, worker_id FROM noetl.step_timeline WHERE execution_id = $1 "
                             "ORDER BY entry_id", int(eid))
    assert [(r["step"], r["status"], r["worker_id"]) for r in steps] == [("start", "COMPLETED", "w1"),
                                                                        ("end", "COMPLETED", "w1")]
    r = await client.post("/api/internal/events/project", json={"events": [{"event_id": "x"}]}, headers=auth)
    assert r.status == 400 and "events[0].event_id" in (await r.json())["error"]
    assert (await client.post("/api/internal/events/project", json={"events": envelopes})).status == 403


async def test_eager_outcome_hands_over_the_next_command_and_a_replay_hands_over_the_same(client):
    c = client
    eid = (await start(c))["execution_id"]
    cid, _ = await open_command(c, eid)
    claimed = await (await c.post(f"/api/commands/{cid}/claim", json={"worker_id": "w1"})).json()
    assert claimed["started"] is True  # the claim recorded command.started
    batch = {"execution_id": eid, "worker_id": "w1", "eager": {"slots": 2, "pool": "shared"},
             "events": [{"event_type": "call.done", "command_id": cid, "step": "start",
                         "payload": {"result": {"double": 4}}},
                        {"event_type": "command.completed", "command_id": cid, "step": "start"}]}
    key = {"Idempotency-Key": f"w1:{eid}:{cid}:1:ok"}
    first = await (await c.post("/api/events/batch", json=batch, headers=key)).json()
    (handed,) = first["commands"]
    assert handed["node_name"] == "end" and handed["started"] is True and first["duplicate"] is False
    row = await (await c.get(f"/api/commands/{handed['command_id']}")).json()
    assert row["status"] == "RUNNING" and row["context"] == handed["context"]
    events = (await (await c.get(f"/api/executions/{eid}/events")).json())["events"]
    mine = [e["event_type"] for e in events if e["command_id"] == handed["command_id"]]
    # Newest first; never announced, never claimed twice.
    assert mine == ["command.started", "command.claimed", "command.issued"]
    again = await (await c.post("/api/events/batch", json=batch, headers=key)).json()
    assert again["duplicate"] is True and [x["command_id"] for x in again["commands"]] == [handed["command_id"]]
    assert again["event_ids"] == first["event_ids"]
    outbox = await (await c.post("/api/internal/outbox/claim?limit=1000",
                                 headers={"Authorization": "Bearer test-internal-token"})).json()
    notified = {m["payload"].get("command_id") for m in outbox["items"] if m["subject"].startswith("noetl.commands.")}
    assert handed["command_id"] not in notified


async def test_finalize_ends_a_stuck_execution_once(client):
    execution_id = (await start(client))["execution_id"]
    r = await client.post(f"/api/executions/{execution_id}/finalize", json={"status": "done"})
    assert r.status == 422 and "COMPLETED or FAILED" in (await r.json())["error"]
    r = await client.post(f"/api/executions/{execution_id}/finalize", json={"reason": "stuck for a day"})
    assert r.status == 200 and (await r.json())["status"] == "finalized"
    status = await (await client.get(f"/api/executions/{execution_id}/status")).json()
    assert status["status"] == "FAILED" and status["completed"]
    events = (await (await client.get(f"/api/executions/{execution_id}/events")).json())["events"]
    terminal = [e for e in events if e["event_type"] == "playbook.failed"]
    assert len(terminal) == 1 and "stuck for a day" in str(terminal[0]["error"])
    # An operator's action, not caused by an event of the log.
    assert terminal[0].get("parent_event_id") is None
    r = await client.post(f"/api/executions/{execution_id}/finalize", json={})
    assert (await r.json())["status"] == "already_completed"
    events = (await (await client.get(f"/api/executions/{execution_id}/events")).json())["events"]
    assert sum(e["event_type"] == "playbook.failed" for e in events) == 1


async def _log(c, eid):
    return (await (await c.get(f"/api/executions/{eid}/events", params={"page_size": 500})).json())["events"]


async def _batch(c, eid, command_id, step, result):
    events = [{"name": name, "node_name": step, "payload": {"command_id": command_id, "result": result}}
              for name in ("call.done", "command.completed")]
    r = await c.post("/api/events/batch", json={"execution_id": eid, "worker_id": "w1", "events": events})
    assert r.status == 202, await r.text()
    return await r.json()


async def test_the_log_is_in_causal_order_and_ends_at_the_terminal_event(client):
    """A batch's events come before what they caused (the next step's command, the end of the
    execution), and the terminal event is the last event: a reader may stop there."""
    eid = (await start(client, workload={"n": 1}))["execution_id"]
    for step, result in (("start", {"double": 2}), ("end", {"final": 2})):
        cid, _ = await open_command(client, eid)
        assert (await client.post(f"/api/commands/{cid}/claim", json={"worker_id": "w1"})).status == 200
        await _batch(client, eid, cid, step, result)
    log = await _log(client, eid)
    ids = [int(e["event_id"]) for e in log]
    by_id = sorted(log, key=lambda e: int(e["event_id"]))
    kinds = [(e["event_type"], e["node_name"]) for e in by_id]
    assert kinds[-1][0] == "playbook.completed", kinds
    assert kinds.index(("command.completed", "start")) < kinds.index(("command.issued", "end")), kinds
    assert kinds.index(("command.completed", "end")) < kinds.index(("playbook.completed", "tests/two_steps"))
    assert sorted(ids) == sorted(set(ids))
    # batch.accepted is logged first: the batch, then its events, then what they caused.
    accepted = [i for i, k in enumerate(kinds) if k[0] == "batch.accepted"]
    assert [kinds[i + 1][0] for i in accepted] == ["call.done", "call.done"], kinds


async def test_events_after_the_end_are_not_logged(client):
    """A step that ran on after its execution was cancelled reports late: the answer is 2xx, the
    log still ends at `execution.cancelled`."""
    eid = (await start(client))["execution_id"]
    cid, _ = await open_command(client, eid)
    assert (await client.post(f"/api/commands/{cid}/claim", json={"worker_id": "w1"})).status == 200
    assert (await client.post(f"/api/executions/{eid}/cancel", json={})).status == 200
    before = await _log(client, eid)
    answer = await _batch(client, eid, cid, "start", {"double": 2})
    single = await finish(client, eid, cid, {"double": 2}, kind="command.completed")
    after = await _log(client, eid)
    assert answer["event_ids"] == [] and answer["commands_generated"] == 0 and single["event_id"] is None
    assert [e["event_id"] for e in after] == [e["event_id"] for e in before]
    assert max(after, key=lambda e: int(e["event_id"]))["event_type"] == "execution.cancelled"
    status = await (await client.get(f"/api/executions/{eid}/status")).json()
    assert status["status"] == "CANCELLED"


async def test_noetl_python_worker_batches(client):
    """The batches NoETL's Python worker posts (noetl/worker/nats_worker.py): its result is
    `response` (the `result` envelope holds a digest), and its own step.enter/step.exit are not
    logged beside the engine's. A step result answers `{{ start.x }}` and `{{ start.context.x }}`."""
    c = client
    eid = (await start(c, workload={"n": 4}))["execution_id"]
    cid, _ = await open_command(c, eid)
    assert (await c.post(f"/api/commands/{cid}/claim", json={"worker_id": "py"})).status == 200

    async def batch(*events):
        r = await c.post("/api/events/batch", json={"execution_id": eid, "worker_id": "py", "events": [
            {"step": "start", "actionable": False, "informative": True, **e} for e in events]})
        assert r.status == 202, await r.text()
        return await r.json()

    await batch({"name": "command.started", "payload": {"command_id": str(cid), "worker_id": "py"}},
                {"name": "step.enter", "payload": {"status": "started"}})
    envelope = {"status": "COMPLETED", "context": {"double": 8}}
    done = await batch({"name": "call.done", "actionable": True, "payload": {
                            "response": {"double": 8, "rows": [1, 2]}, "result": envelope, "command_id": str(cid)}},
                       {"name": "step.exit", "payload": {"status": "COMPLETED", "result": envelope, "command_id": str(cid)}},
                       {"name": "command.completed", "payload": {"command_id": str(cid), "worker_id": "py",
                                                                  "result": envelope}})
    assert done["commands_generated"] == 1
    end_id, end_step = await open_command(c, eid)
    command = await (await c.get(f"/api/commands/{end_id}")).json()
    assert end_step == "end" and command["context"]["input"] == {"d": 8}

    status = await (await c.get(f"/api/executions/{eid}/status", params={"steps": "true"})).json()
    assert status["steps"]["start"] == {"double": 8, "rows": [1, 2]}
    events = (await (await c.get(f"/api/executions/{eid}/events")).json())["events"]
    marks = [(e["event_type"], e["node_name"]) for e in events if e["event_type"] in ("step.enter", "step.exit")]
    assert sorted(marks) == [("step.enter", "end"), ("step.enter", "start"), ("step.exit", "start")]
    single = await c.post("/api/events", json={"execution_id": eid, "name": "step.exit", "node_name": "start",
                                               "payload": {"status": "COMPLETED"}})
    assert single.status == 200 and (await single.json())["duplicate"] is True
    only_marks = await batch({"name": "step.enter", "payload": {"status": "started"}})
    assert only_marks["event_ids"] == [] and only_marks["commands_generated"] == 0
    events = (await (await c.get(f"/api/executions/{eid}/events")).json())["events"]
    assert sum(e["event_type"] == "step.enter" and e["node_name"] == "start" for e in events) == 1


async def test_an_archived_execution_replays_to_its_state(client, tmp_path):
    """The archive holds all a replay needs: the log and state read back from the files fold
    through the engine to the state the shard stored."""
    from noetl_common import history_archive
    from noetl_api_shard.execution.upkeep import archive
    from noetl_api_shard.execution.write import replay
    from noetl_api_shard.execution.write import engine_port as engine
    from noetl_api_shard.execution.keys import ORCHESTRATOR
    from noetl_api_shard.state import SERVICES
    from noetl_api_shard.store import partitions

    c = client
    eid = (await start(c, workload={"n": 4}))["execution_id"]
    for expected in ("start", "end"):
        cid, step = await open_command(c, eid)
        assert step == expected
        assert (await c.post(f"/api/commands/{cid}/claim", json={"worker_id": "w1"})).status == 200
        await finish(c, eid, cid, {"double": 8} if step == "start" else {"final": 8})
    assert (await (await c.get(f"/api/executions/{eid}/status")).json())["status"] == "COMPLETED"
    app = c.server.app
    pool = app[SERVICES].shard_pool
    (s,) = [s for s in await partitions.slices(pool) if (s.lower or 0) <= int(eid) < s.upper]
    await archive.write(pool, tmp_path, s, 0)  # as retention does once the slice is detached

    rows = history_archive.read_execution(tmp_path, int(eid))
    assert rows is not None
    (execution,) = rows["execution"]
    log = sorted(rows["event"], key=lambda r: r["event_id"])
    stored = {r["result_id"]: r["data"] for r in rows["result_store"]}
    playbook, _ = await app[ORCHESTRATOR].playbook(execution["catalog_id"])
    replayed, _ = replay.fold_rows(playbook, execution, log, stored)
    archived_state = engine.decode_state(bytes.fromhex(execution["state"][2:]))
    assert engine.checksum(replayed) == engine.checksum(archived_state)
    live = await (await c.get("/api/replay/state", params={"execution_id": eid})).json()
    assert live["stored_checksum"] == engine.checksum(archived_state)


BIG_THEN_READ = b"""
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: big_then_read, path: tests/big_then_read}
workflow:
  - step: start
    tool: {kind: python, code: "result = {}"}
    next: [{step: middle}]
  - step: middle
    tool: {kind: python, input: {count: "{{ start.count }}"}, code: "result = {}"}
    next: [{step: end}]
  - step: end
    tool: {kind: python, input: {second: "{{ start.rows[1] }}", whole: "{{ start }}"}, code: "result = {}"}
"""


async def test_a_large_result_is_kept_as_a_stub_and_loaded_where_a_template_reads_past_it(client):
    """Over the event-log limit the shard stores the result; the execution's data keeps the stub
    (reference and small fields), and a later step reading a dropped field gets it from the store."""
    from noetl_api_shard.state import SERVICES

    c = client
    r = await c.post("/api/catalog/register", json={"content": base64.b64encode(BIG_THEN_READ).decode()})
    assert r.status == 200
    r = await c.post("/api/execute", json={"path": "tests/big_then_read"})
    eid = (await r.json())["execution_id"]
    rows = [{"id": i, "pad": "p" * 200} for i in range(1000)]  # ~220 KB, over the 100 KiB limit
    for step, result in (("start", {"count": 1000, "rows": rows}), ("middle", {"ok": True})):
        cid, name = await open_command(c, eid)
        assert name == step
        assert (await c.post(f"/api/commands/{cid}/claim", json={"worker_id": "w1"})).status == 200
        await finish(c, eid, cid, result)
    cid, name = await open_command(c, eid)
    command = await (await c.get(f"/api/commands/{cid}")).json()
    args = command["context"]["args"]
    assert name == "end" and args["second"] == rows[1], "loaded from the result store for the template"
    assert args["whole"]["count"] == 1000 and "rows" not in args["whole"] and args["whole"]["_ref"]["ref"]
    pool = c.server.app[SERVICES].shard_pool
    kept = await pool.fetchval("SELECT result FROM noetl.step_result WHERE execution_id = $1 AND step = 'start'",
                               int(eid))
    assert kept["count"] == 1000 and "rows" not in kept, "the data row is the stub"
    replay = await (await c.get("/api/replay/state", params={"execution_id": eid})).json()
    assert replay["matches"], replay


async def test_listing_combines_the_filters_given_with_the_cursor(client):
    ids = [int((await start(client))["execution_id"]) for _ in range(3)]
    cancelled = ids[1]
    assert (await client.post(f"/api/executions/{cancelled}/cancel", json={})).status == 200

    async def walk(**params):
        seen, cursor = [], None
        while True:
            r = await client.get("/api/executions", params={**params, "limit": "1", **({"cursor": cursor} if cursor else {})})
            assert r.status == 200, await r.text()
            seen += [int(e["execution_id"]) for e in await r.json()]
            cursor = r.headers.get("X-Next-Cursor")
            if not cursor:
                return seen

    assert await walk(status="CANCELLED") == [cancelled]
    assert await walk(path="tests/two_steps") == sorted(ids, reverse=True)
    assert await walk(path="tests/two_steps", status="RUNNING") == [i for i in sorted(ids, reverse=True) if i != cancelled]
    assert await walk(path="tests/other") == []
    assert await walk(parent_execution_id=str(ids[0])) == []


async def test_noetl_workers_second_claim_and_started_resend_are_answered_from_the_claim(database_factory):
    """NoETL's worker claims each command from two consumers and then posts `command.started`, which
    the claim already logged. While the lease surely runs, both are answered from the claim this
    process granted: the second claim is a 409 even while the execution's row is locked (it used to
    queue behind the lock), and the re-send gets the claim's own event id, logged once."""
    import asyncpg

    dbs = await database_factory()
    async with TestClient(TestServer(create_app(settings_with_lease(dbs, 60)))) as c:
        await register(c)
        eid = (await start(c))["execution_id"]
        cid, _ = await open_command(c, eid)
        assert (await c.post(f"/api/commands/{cid}/claim", json={"worker_id": "py"})).status == 200
        events = (await (await c.get(f"/api/executions/{eid}/events")).json())["events"]
        (started_id,) = [e["event_id"] for e in events if e["event_type"] == "command.started"]

        holder = await asyncpg.connect(dbs.shard_dsn)
        try:
            locked = holder.transaction()
            await locked.start()
            await holder.execute("SELECT 1 FROM noetl.execution WHERE execution_id = $1 FOR UPDATE", int(eid))
            again = await asyncio.wait_for(c.post(f"/api/commands/{cid}/claim", json={"worker_id": "py"}), 5)
            body = await again.json()
            assert again.status == 409 and body["code"] == "active_claim" and body["detail"]["code"] == "active_claim"
            await locked.rollback()
        finally:
            await holder.close()

        r = await c.post("/api/events/batch", json={"execution_id": eid, "worker_id": "py", "events": [
            {"step": "start", "name": "command.started", "payload": {"command_id": str(cid), "worker_id": "py"}},
            {"step": "start", "name": "step.enter", "payload": {"status": "started"}}]})
        assert r.status == 202 and [str(i) for i in (await r.json())["event_ids"]] == [started_id]
        events = (await (await c.get(f"/api/executions/{eid}/events")).json())["events"]
        assert [e["event_type"] for e in events if e["command_id"] == cid].count("command.started") == 1
        # Its outcome ends the claim: a claim now is refused by the database, as terminal.
        await finish(c, eid, cid, {"double": 4}, worker="py")
        late = await c.post(f"/api/commands/{cid}/claim", json={"worker_id": "py"})
        assert late.status == 409 and (await late.json())["code"] == "already_terminal"


async def test_a_first_claim_written_without_a_read_still_loses_to_a_claim_made_elsewhere(database_factory):
    """The shard that issued a command claims it in one optimistic statement, on the condition that
    it is still ISSUED. Another process on the same database (a second replica) claimed it first:
    the condition fails, nothing is written, and the database's answer stands — 409, one claim."""
    settings = settings_with_lease(await database_factory(), 60)
    async with TestClient(TestServer(create_app(settings))) as issuer, \
            TestClient(TestServer(create_app(settings))) as other:
        await register(issuer)
        eid = (await start(issuer))["execution_id"]
        cid, _ = await open_command(issuer, eid)
        assert (await other.post(f"/api/commands/{cid}/claim", json={"worker_id": "elsewhere"})).status == 200
        mine = await issuer.post(f"/api/commands/{cid}/claim", json={"worker_id": "here"})
        body = await mine.json()
        assert mine.status == 409 and body["code"] == "active_claim" and "elsewhere" in body["error"]
        events = (await (await issuer.get(f"/api/executions/{eid}/events")).json())["events"]
        claims = [e["worker_id"] for e in events if e["command_id"] == cid and e["event_type"] == "command.claimed"]
        assert claims == ["elsewhere"]
        # Where nobody else did, the issuer's own first claim is granted (and a second one refused).
        finished = await finish(issuer, eid, cid, {"double": 4}, worker="elsewhere")
        assert finished["commands_generated"] == 1
        nxt, step = await open_command(issuer, eid)
        granted = await issuer.post(f"/api/commands/{nxt}/claim", json={"worker_id": "here"})
        assert granted.status == 200 and step == "end" and (await granted.json())["context"]["input"] == {"d": 4}
        assert (await other.post(f"/api/commands/{nxt}/claim", json={"worker_id": "elsewhere"})).status == 409
