"""The shapes of noetl_common.wire.internal encode exactly as the dicts they replaced did, and the
reference worker still reads the notifications of NoETL's own servers."""

from __future__ import annotations

import msgspec

from noetl_common.wire.internal import (CommandNotification, Delivery, EventEnvelope, EventsMessage, OutboxClaim,
                                        OutboxMessage, ProjectRequest)


def test_a_notification_encodes_as_the_dict_the_shard_wrote():
    note = CommandNotification(execution_id=21, event_id=34, command_id="34", step="fetch", execution_pool="shared")
    assert msgspec.json.encode(note) == msgspec.json.encode(
        {"execution_id": 21, "event_id": 34, "command_id": "34", "step": "fetch", "execution_pool": "shared"})
    full = CommandNotification(execution_id=21, event_id=34, command_id="34", step="fetch", execution_pool="shared",
                               server_url="http://shard-0:8080", redelivery=True)
    assert msgspec.json.encode(full) == msgspec.json.encode(
        {"execution_id": 21, "event_id": 34, "command_id": "34", "step": "fetch", "execution_pool": "shared",
         "server_url": "http://shard-0:8080", "redelivery": True})


def test_notifications_of_noetl_servers_are_read():
    rust = msgspec.json.decode(b'{"execution_id": "21", "event_id": "34", "step": "fetch"}', type=CommandNotification)
    assert (rust.execution_id, rust.event_id, rust.command_id, rust.server_url) == ("21", "34", None, None)


def test_an_envelope_encodes_as_the_dict_the_shard_wrote():
    envelope = EventEnvelope(event_id="11", execution_id="21", event_type="call.done", node_name="start",
                             status="COMPLETED", command_id="12", attempt=1, event_time_ms=1700000000000)
    assert msgspec.json.encode(EventsMessage(events=[envelope])) == msgspec.json.encode({"events": [{
        "event_id": "11", "execution_id": "21", "event_type": "call.done", "parent_execution_id": None,
        "node_name": "start", "status": "COMPLETED", "command_id": "12", "worker_id": None, "attempt": 1,
        "iteration": None, "error": None, "catalog_id": None, "event_time_ms": 1700000000000}]})


def test_the_projector_passes_events_through_and_the_shard_parses_them():
    raw = b'{"event_id":"11","execution_id":"21","event_type":"step.enter"}'
    body = msgspec.json.encode(ProjectRequest[msgspec.Raw](messages=[Delivery("900", [msgspec.Raw(raw)])]))
    assert body == b'{"messages":[{"id":"900","events":[' + raw + b"]}]}"
    parsed = msgspec.json.decode(body, type=ProjectRequest[EventEnvelope])
    assert parsed.events is None and parsed.messages is not None
    assert parsed.messages[0].events == [EventEnvelope(event_id="11", execution_id="21", event_type="step.enter")]


def test_a_claim_carries_payloads_verbatim():
    claim = OutboxClaim(shard=1, items=[OutboxMessage(id=5, subject="noetl.commands.shared.21",
                                                      payload=msgspec.Raw(b'{"step":"a","event_id":34}'))])
    body = msgspec.json.encode(claim)
    assert body == (b'{"shard":1,"items":[{"id":5,"execution_id":null,"subject":"noetl.commands.shared.21",'
                    b'"payload":{"step":"a","event_id":34},"headers":null,"attempts":0}]}')
    assert bytes(msgspec.json.decode(body, type=OutboxClaim).items[0].payload) == b'{"step":"a","event_id":34}'
