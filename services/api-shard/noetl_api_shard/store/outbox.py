"""noetl.outbox (shard DB): messages written in the same transaction as what they announce
(store.writes), until published.

The publisher claims rows with a lease (`claim_expires_at`): rows of a publisher that died come
back once the lease runs out. A published row is deleted, so the table holds only what is still
to do and a claim costs the same after millions of messages. A failed publish is retried with
capped exponential backoff; nothing is ever dropped.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 300.0


class OutboxRow(msgspec.Struct, kw_only=True):
    id: int
    execution_id: int | None
    event_id: int | None
    subject: str
    payload: Any
    headers: dict[str, str] | None = None


class ClaimedMessage(msgspec.Struct, kw_only=True):
    id: int
    execution_id: int | None
    subject: str
    payload: Any
    headers: dict[str, str] | None
    attempts: int


_CLAIM = """
WITH done AS (
    DELETE FROM noetl.outbox WHERE id = ANY($4::bigint[])
),
ready AS (
    SELECT id FROM noetl.outbox
    WHERE ((status IN ('pending', 'failed') AND available_at <= now())
           OR (status = 'claimed' AND claim_expires_at < now()))
      AND id <> ALL($4::bigint[])
    ORDER BY available_at, id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE noetl.outbox o SET status = 'claimed', claimed_by = $3,
       claim_expires_at = now() + make_interval(secs => $2)
FROM ready WHERE o.id = ready.id
RETURNING o.id, o.execution_id, o.subject, o.payload, o.headers, o.attempts
"""


async def claim(pool: asyncpg.Pool, *, limit: int, lease_seconds: float, claimer: str,
                published: list[int] | None = None) -> list[ClaimedMessage]:
    """Delete `published` rows and claim up to `limit` ready ones, in one statement."""
    rows = await pool.fetch(_CLAIM, limit, lease_seconds, claimer, published or [])
    return sorted((ClaimedMessage(**dict(r)) for r in rows), key=lambda m: m.id)


async def mark_published(pool: asyncpg.Pool, ids: list[int]) -> int:
    status = await pool.execute("DELETE FROM noetl.outbox WHERE id = ANY($1::bigint[])", ids)
    return int(status.split()[-1])


async def mark_failed(pool: asyncpg.Pool, failures: list[tuple[int, str]]) -> int:
    status = await pool.execute(
        """
        UPDATE noetl.outbox o SET status = 'failed', attempts = o.attempts + 1, last_error = f.error,
               claim_expires_at = NULL,
               available_at = now() + make_interval(secs => least($3::float8, $2::float8 * power(2, least(o.attempts, 30))))
        FROM unnest($1::bigint[], $4::text[]) AS f(id, error)
        WHERE o.id = f.id
        """, [f[0] for f in failures], BACKOFF_BASE_SECONDS, BACKOFF_CAP_SECONDS, [f[1][:2000] for f in failures])
    return int(status.split()[-1])


async def pending_count(pool: asyncpg.Pool) -> dict[str, int]:
    row = await pool.fetchrow(
        "SELECT count(*) FILTER (WHERE status = 'pending') AS pending, "
        "count(*) FILTER (WHERE status = 'claimed') AS claimed, "
        "count(*) FILTER (WHERE status = 'failed') AS failed FROM noetl.outbox")
    return {"pending": row["pending"] + row["failed"] + row["claimed"], "claimed": row["claimed"],
            "retrying": row["failed"]}
