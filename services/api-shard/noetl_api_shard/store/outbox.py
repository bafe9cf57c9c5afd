"""noetl.outbox (shard DB): messages written in the same transaction as what they announce
(store.writes), until published.

A claim reads the oldest rows that are due, by primary key, without writing: each shard has one
publisher (replica slicing), and should two overlap or one die mid-batch, the rows it read are
simply read and published again, and JetStream's duplicate window (Nats-Msg-Id = row id) drops the
second copy. A published row is deleted (reported with the next claim, deleted in its
statement), so the table holds only what is still to do. A failed publish is retried with capped
exponential backoff; nothing is ever dropped.
"""

from __future__ import annotations

from typing import Any

import time

import asyncpg
import msgspec

from noetl_common.ids import timestamp_ms
from noetl_common.wire.internal import OutboxMessage

BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 300.0


class OutboxRow(msgspec.Struct, kw_only=True):
    id: int
    execution_id: int | None
    event_id: int | None
    subject: str
    payload: Any  # a wire.internal CommandNotification or EventsMessage, stored as jsonb
    headers: dict[str, str] | None = None


_CLAIM = """
WITH done AS (
    DELETE FROM noetl.outbox WHERE id = ANY($2::bigint[])
)
SELECT id, execution_id, subject, payload::text AS payload, headers, attempts FROM noetl.outbox
WHERE available_at <= now() AND id <> ALL($2::bigint[])
ORDER BY id
LIMIT $1
"""


async def claim(pool: asyncpg.Pool, *, limit: int, published: list[int] | None = None) -> list[OutboxMessage]:
    """Delete `published` rows and read up to `limit` due ones, oldest first, in one statement.
    Payloads are read as JSON text and passed on as they are: the publisher publishes them
    verbatim, so nothing decodes them on the way. Postgres prints jsonb with a space after every
    `:` and `,`; those are dropped (a scan, no decoding), so what is published is compact JSON."""
    rows = await pool.fetch(_CLAIM, limit, published or [])
    return [OutboxMessage(id=r["id"], execution_id=r["execution_id"], subject=r["subject"],
                          payload=msgspec.Raw(msgspec.json.format(r["payload"].encode(), indent=-1)),
                          headers=r["headers"], attempts=r["attempts"]) for r in rows]


async def mark_published(pool: asyncpg.Pool, ids: list[int]) -> int:
    status = await pool.execute("DELETE FROM noetl.outbox WHERE id = ANY($1::bigint[])", ids)
    return int(status.split()[-1])


async def mark_failed(pool: asyncpg.Pool, failures: list[tuple[int, str]]) -> int:
    status = await pool.execute(
        """
        UPDATE noetl.outbox o SET status = 'failed', attempts = o.attempts + 1, last_error = f.error,
               available_at = now() + make_interval(secs => least($3::float8, $2::float8 * power(2, least(o.attempts, 30))))
        FROM unnest($1::bigint[], $4::text[]) AS f(id, error)
        WHERE o.id = f.id
        """, [f[0] for f in failures], BACKOFF_BASE_SECONDS, BACKOFF_CAP_SECONDS, [f[1][:2000] for f in failures])
    return int(status.split()[-1])


async def pending_count(pool: asyncpg.Pool) -> dict[str, Any]:
    """Every row is unpublished work (the KEDA signal); `retrying` are those waiting out a backoff.
    `oldest_age_seconds`: how long the oldest row has waited, from its id's timestamp (row ids are
    snowflakes minted when written), 0 when there is none."""
    row = await pool.fetchrow(
        "SELECT count(*) AS pending, count(*) FILTER (WHERE status = 'failed') AS retrying, min(id) AS oldest "
        "FROM noetl.outbox")
    age = 0.0
    if row["oldest"] is not None:
        age = max(0.0, (time.time_ns() // 1_000_000 - timestamp_ms(row["oldest"])) / 1000)
    return {"pending": row["pending"], "retrying": row["retrying"], "oldest_age_seconds": age}
