"""The projector reads both message formats and splits requests at the shard's event cap."""

from __future__ import annotations

import msgspec
from nats.aio.msg import Msg

from noetl_projector.consumer import ProjectBody, chunks, decode

ENVELOPE = {"event_id": "11", "execution_id": "21", "event_type": "step.enter"}


def message(payload, headers=None) -> Msg:
    data = payload if isinstance(payload, bytes) else msgspec.json.encode(payload)
    return Msg(_client=None, subject="noetl.events.0.21", data=data, headers=headers)


def test_a_batch_is_named_by_its_nats_msg_id_and_an_older_event_by_its_event_id():
    batch = decode(message({"events": [ENVELOPE, {**ENVELOPE, "event_id": "12"}]}, {"Nats-Msg-Id": "900"}))
    single = decode(message(ENVELOPE))
    body = msgspec.json.decode(msgspec.json.encode(ProjectBody([batch, single])))
    assert body == {"messages": [{"id": "900", "events": [ENVELOPE, {**ENVELOPE, "event_id": "12"}]},
                                 {"id": "11", "events": [ENVELOPE]}]}


def test_unreadable_or_unnamed_messages_are_not_deliveries():
    assert decode(message({"events": [ENVELOPE]})) is None  # no Nats-Msg-Id
    assert decode(message({"events": []}, {"Nats-Msg-Id": "900"})) is None
    assert decode(message({"events": "x"}, {"Nats-Msg-Id": "900"})) is None
    assert decode(message({"execution_id": "21"})) is None
    assert decode(message(b"{not json")) is None
    assert decode(message([ENVELOPE])) is None


def test_requests_are_split_at_the_event_cap_and_a_bigger_message_goes_alone():
    items = [(i, decode(message({"events": [ENVELOPE] * n}, {"Nats-Msg-Id": str(i)})))
             for i, n in enumerate([2, 2, 1, 7, 3])]
    assert [[i for i, _ in chunk] for chunk in chunks(items, 5)] == [[0, 1, 2], [3], [4]]
