"""The projector reads every message format (packed deliveries, one transaction, an older bare
event), and splits requests at the shard's event cap; the publisher's packs read back exactly."""

from __future__ import annotations

import msgspec
from nats.aio.msg import Msg

from noetl_common.wire.internal import OutboxMessage, ProjectRequest
from noetl_outbox_publisher.packing import MAX_PACK_BYTES, is_mirror, packs
from noetl_projector.consumer import chunks, decode

ENVELOPE = {"event_id": "11", "execution_id": "21", "event_type": "step.enter"}


def message(payload, headers=None) -> Msg:
    data = payload if isinstance(payload, bytes) else msgspec.json.encode(payload)
    return Msg(_client=None, subject="noetl.events.0.21", data=data, headers=headers)


def test_a_batch_is_named_by_its_nats_msg_id_and_an_older_event_by_its_event_id():
    batch = decode(message({"events": [ENVELOPE, {**ENVELOPE, "event_id": "12"}]}, {"Nats-Msg-Id": "900"}))
    single = decode(message(ENVELOPE))
    body = msgspec.json.decode(msgspec.json.encode(ProjectRequest[msgspec.Raw](messages=[*batch, *single])))
    assert body == {"messages": [{"id": "900", "events": [ENVELOPE, {**ENVELOPE, "event_id": "12"}]},
                                 {"id": "11", "events": [ENVELOPE]}]}


def test_unreadable_or_unnamed_messages_are_not_deliveries():
    assert decode(message({"events": [ENVELOPE]})) is None  # no Nats-Msg-Id
    assert decode(message({"events": []}, {"Nats-Msg-Id": "900"})) is None
    assert decode(message({"events": "x"}, {"Nats-Msg-Id": "900"})) is None
    assert decode(message({"deliveries": [{"id": "", "events": [ENVELOPE]}]})) is None
    assert decode(message({"deliveries": [{"id": "5"}]})) is None
    assert decode(message({"execution_id": "21"})) is None
    assert decode(message(b"{not json")) is None
    assert decode(message([ENVELOPE])) is None


def test_requests_are_split_at_the_event_cap_and_a_bigger_message_goes_alone():
    items = [(i, decode(message({"events": [ENVELOPE] * n}, {"Nats-Msg-Id": str(i)})))
             for i, n in enumerate([2, 2, 1, 7, 3])]
    assert [[i for i, _ in chunk] for chunk in chunks(items, 5)] == [[0, 1, 2], [3], [4]]


def _row(i: int, events: list[dict], subject: str = "noetl.events.0.21") -> OutboxMessage:
    # Postgres' jsonb text, spaces and all: the shard compacts it, but packing must not rely on that.
    payload = msgspec.json.encode({"events": events}).replace(b'":', b'": ').replace(b",", b", ")
    return OutboxMessage(id=i, subject=subject, payload=msgspec.Raw(payload))


def test_mirror_rows_are_packed_and_read_back_as_one_delivery_each():
    rows = [_row(100 + i, [{**ENVELOPE, "event_id": str(i)}]) for i in range(5)]
    notification = OutboxMessage(id=7, subject="noetl.commands.shared.21", payload=msgspec.Raw(b"{}"))
    assert not is_mirror(notification) and all(is_mirror(r) for r in rows)
    (pack,) = packs(rows)
    assert pack.ids == [100, 101, 102, 103, 104] and pack.subject == "noetl.events.0.21"
    deliveries = decode(message(pack.body, {"Nats-Msg-Id": pack.msg_id}))
    assert [(d.id, [msgspec.json.decode(e) for e in d.events]) for d in deliveries] == \
        [(str(100 + i), [{**ENVELOPE, "event_id": str(i)}]) for i in range(5)]


def test_packs_stay_under_the_size_cap_and_keep_every_row_once():
    big = [_row(i, [{**ENVELOPE, "error": "x" * 50_000}]) for i in range(30)]
    out = list(packs(big))
    assert len(out) > 1 and all(len(p.body) <= MAX_PACK_BYTES + 1024 for p in out)
    assert [i for p in out for i in p.ids] == list(range(30))
