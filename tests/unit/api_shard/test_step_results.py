"""Which value a finishing event gives the engine, and which events need the result store."""

from __future__ import annotations

import msgspec

from noetl_api_shard.execution.write.step_results import inline_value, needs_store, value_of
from noetl_api_shard.execution.write.worker_events import WorkerEvent

REF = "noetl://execution/5/result/start/7"


def ev(event_type: str, payload: dict) -> WorkerEvent:
    return WorkerEvent(execution_id=5, event_type=event_type, step="start", payload=payload, meta={},
                       worker_id="w", event_id=None, command_id=1, status=None, actionable=True)


def test_inline_values():
    assert inline_value({"result": {"a": 1}}) == {"a": 1}
    # The Rust worker's call.done (it carries call_index): the value is the envelope's context.
    assert inline_value({"call_index": 0, "result": {"status": "success", "context": {"a": 1}}}) == {"a": 1}
    # Without call_index a {status, context} dict is somebody's data, kept as is.
    assert inline_value({"result": {"status": "ok", "context": 1}}) == {"status": "ok", "context": 1}
    # With other keys it is not an envelope either.
    assert inline_value({"call_index": 0, "result": {"status": "x", "rows": []}}) == {"status": "x", "rows": []}


def test_noetl_python_worker_value_is_its_response():
    # NoETL's worker: `response` is the value, `result` a control-plane digest (its engine reads
    # `response` first, then `result`); a None response is still the value.
    payload = {"response": {"greeting": "hi", "rows": [1]},
               "result": {"status": "COMPLETED", "context": {"greeting": "hi"}}, "command_id": "1"}
    assert inline_value(payload) == {"greeting": "hi", "rows": [1]}
    assert value_of(payload, {}) == {"greeting": "hi", "rows": [1]}
    assert inline_value({"response": None, "result": {"status": "COMPLETED"}}) is None


def test_value_of_a_stored_reference():
    payload = {"result": {"status": "ok", "context": {"data": {"_ref": REF}},
                          "reference": {"kind": "result_ref", "ref": REF}}}
    # a stored mapping carries its reference and tier (`{{ step._ref }}`, what kind: artifact loads)
    assert value_of(payload, {7: {"big": True}}) == {"big": True, "_ref": payload["result"]["reference"],
                                                     "_store": "db"}
    assert value_of(payload, {7: [1, 2]}) == [1, 2]  # anything else is the value itself
    assert value_of(payload, {}) is None


def test_needs_store():
    big = {"rows": ["x" * 1000] * 200}
    assert needs_store(ev("call.done", {"result": big}))
    assert needs_store(ev("call.done", {"result": "y" * 200_000}))
    assert needs_store(ev("call.done", {"result": {"reference": {"kind": "result_ref", "ref": REF}}}))
    assert not needs_store(ev("call.done", {"result": {"rows": [1, 2]}}))
    assert not needs_store(ev("call.error", {"result": big, "error": "x"}))  # failures carry no step result
    assert not needs_store(ev("command.completed", {"status": "COMPLETED"}))
    assert not needs_store(ev("call.done", {"result": 12345}))
    # NoETL's worker: the size that counts is its response's, not the digest's.
    assert needs_store(ev("call.done", {"response": big, "result": {"status": "COMPLETED", "context": {}}}))
    assert len(msgspec.json.encode(big)) > 100 * 1024
