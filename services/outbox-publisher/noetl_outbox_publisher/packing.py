"""Mirror messages travel packed: the rows of one claim that carry events for the projector
(`noetl.events.<shard>.*`, one row per shard transaction) go to JetStream as one message,
`{"deliveries": [{"id": "<row id>", "events": [...]}, ...]}` (`wire.internal.EventsMessage`),
instead of one message each. The
projector marks each delivery by its row id, so a row published twice — in two different packs,
after a crash — is still folded once. Command notifications are never packed: each is a
subject a worker consumes on its own."""

from __future__ import annotations

from typing import Iterator

import msgspec

from noetl_common.streams import is_events_subject
from noetl_common.wire.internal import OutboxMessage

MAX_PACK_BYTES = 512 * 1024   # well under JetStream's default 1 MiB message limit


class Pack(msgspec.Struct):
    subject: str
    msg_id: str
    body: bytes
    ids: list[int]


def is_mirror(row: OutboxMessage) -> bool:
    return is_events_subject(row.subject)


def _delivery(row: OutboxMessage) -> bytes:
    # The payload is the JSON object {"events": [...]} (an EventsMessage); the delivery (a
    # wire.internal Delivery) is that object plus its id.
    raw = bytes(row.payload).rstrip()
    return raw[:-1] + b',"id":"' + str(row.id).encode() + b'"}'


def packs(rows: list[OutboxMessage]) -> Iterator[Pack]:
    """Consecutive mirror rows (in id order) packed up to MAX_PACK_BYTES each."""
    chunk: list[OutboxMessage] = []
    parts: list[bytes] = []
    size = 0
    for row in rows:
        part = _delivery(row)
        if chunk and size + len(part) > MAX_PACK_BYTES:
            yield _pack(chunk, parts)
            chunk, parts, size = [], [], 0
        chunk.append(row)
        parts.append(part)
        size += len(part) + 1
    if chunk:
        yield _pack(chunk, parts)


def _pack(rows: list[OutboxMessage], parts: list[bytes]) -> Pack:
    ids = [r.id for r in rows]
    return Pack(subject=rows[0].subject, msg_id=f"{ids[0]}-{ids[-1]}-{len(ids)}",
                body=b'{"deliveries":[' + b",".join(parts) + b"]}", ids=ids)
