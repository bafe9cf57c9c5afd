"""Ingest and replay read a finishing event the same way: for every shape NoETL workers post
(Python worker: payload with result/error; Rust worker: context, top-level status), the engine
input ingest derives from the posted event equals the one replay derives from the logged row."""

from __future__ import annotations

import msgspec
import pytest

from noetl_common.wire.execution import EventIn
from noetl_api_shard.execution.write.ingest import _event_row, engine_event_for
from noetl_api_shard.execution.write.replay import engine_event_of
from noetl_api_shard.execution.write.worker_events import normalise

XID, CID = 1000, 2000

SHAPES = {
    # Python worker
    "call.done with a result": dict(name="call.done", payload={"result": {"a": 1}}),
    "call.done with status FAILED": dict(name="call.done", status="FAILED", payload={"error": "boom"}),
    "call.done with payload.status error": dict(name="call.done", payload={"status": "error", "error": "boom"}),
    "call.done with an error inside the result": dict(name="call.done", payload={"result": {"error": "x"}}),
    "call.error with a message": dict(name="call.error", payload={"error": "boom"}),
    "call.error with an error object": dict(name="call.error", payload={"error": {"message": "boom"}}),
    "call.error without an error": dict(name="call.error", payload={}),
    # Rust worker
    "command.completed with a result": dict(event_type="command.completed", context={"result": [1, 2]}),
    "command.completed with status FAILED": dict(event_type="command.completed", status="FAILED",
                                                 context={"error": "tool failed"}),
    "command.completed with payload.status FAILED": dict(event_type="command.completed",
                                                         payload={"status": "FAILED", "error": "tool failed"}),
    "command.completed with status COMPLETED and a null result": dict(event_type="command.completed",
                                                                      status="COMPLETED", context={"result": None}),
    "command.failed": dict(event_type="command.failed", status="FAILED", context={"error": {"message": "x"}}),
}


class _Svc:
    @staticmethod
    def mint_owned_id() -> int:
        return 3000


def _row(event: dict) -> dict:
    """The event as the shard logs it (the columns replay reads)."""
    ev = normalise(EventIn(**event, execution_id=XID, command_id=CID))
    return msgspec.structs.asdict(_event_row(_Svc(), ev, None, catalog_id=1))


@pytest.mark.parametrize("shape", list(SHAPES))
def test_ingest_and_replay_agree(shape):
    ev = normalise(EventIn(**SHAPES[shape], execution_id=XID, command_id=CID))
    assert engine_event_for(CID, ev) == engine_event_of(_row(SHAPES[shape]))


def test_a_failure_reported_only_in_the_payload_is_a_failure_both_ways():
    ev = normalise(EventIn(**SHAPES["command.completed with payload.status FAILED"], execution_id=XID, command_id=CID))
    assert engine_event_for(CID, ev).kind == "command_failed"
