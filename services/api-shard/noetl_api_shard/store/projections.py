"""Read models folded from published events: execution summaries and per-step timelines.

Exactly once, in any order. A published message carries the events of one shard transaction and
JetStream redelivers whole messages: a projector that dies leaves its batch unacked, and it comes
back only after the ack wait, by which time its successor has folded newer messages. So each
delivery (message) id goes into `projected_delivery`, and only the events of deliveries that were
not there yet are applied. The fold itself commutes: counts add, times take least/first, a
terminal status sticks, and "last" fields follow the highest event id.

A batch is folded by one statement, whatever its size: the events travel as column arrays, the
markers, the per-execution and the per-step aggregates are CTEs, and each read model gets one
upsert of one row per key. The result equals folding the batch's fresh events one at a time in
event id order (the fold this replaced; tests/integration/api_shard/test_projection_fold.py keeps
it as the reference).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from noetl_common.vocabulary import EventType

TERMINAL: dict[str, str] = {EventType.PLAYBOOK_COMPLETED: "COMPLETED", EventType.PLAYBOOK_FAILED: "FAILED",
                             EventType.EXECUTION_CANCELLED: "CANCELLED"}
STEP_STATUS: dict[str, str] = {
    EventType.COMMAND_ISSUED: "ISSUED", EventType.COMMAND_CLAIMED: "CLAIMED", EventType.COMMAND_STARTED: "RUNNING",
    EventType.CALL_DONE: "COMPLETED", EventType.COMMAND_COMPLETED: "COMPLETED",
    EventType.CALL_ERROR: "FAILED", EventType.COMMAND_FAILED: "FAILED"}


class ProjectedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One event as the fold needs it (ids parsed, time decoded)."""

    event_id: int
    execution_id: int
    event_type: str
    node_name: str | None = None
    command_id: int | None = None
    worker_id: str | None = None
    attempt: int | None = None
    iteration: int | None = None
    error: str | None = None
    catalog_id: int | None = None
    at: datetime | None = None  # the event's own time; None means the transaction's now()


class Delivery(msgspec.Struct, frozen=True):
    """One published message (or one event posted alone): marked once, folded whole or not at all."""

    delivery_id: int
    events: list[ProjectedEvent]


# Array parameters, one element per event: $1 delivery_id, $2 event_id, $3 execution_id,
# $4 event_type, $5 node_name, $6 command_id, $7 worker_id, $8 attempt, $9 iteration, $10 error,
# $11 catalog_id, $12 at, $13 terminal (the execution status the event ends with, else NULL),
# $14 step_status (the step-run status the event reports, else NULL).
FOLD_SQL = """
WITH ev AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::bigint[],
                         $7::text[], $8::int[], $9::int[], $10::text[], $11::bigint[], $12::timestamptz[],
                         $13::text[], $14::text[])
        AS ev(delivery_id, event_id, execution_id, event_type, node_name, command_id, worker_id, attempt,
              iteration, error, catalog_id, at, terminal, step_status)
),
marked AS (
    -- Sorted, so concurrent folds take the marker locks in one order.
    INSERT INTO noetl.projected_delivery (delivery_id)
    SELECT DISTINCT delivery_id FROM ev ORDER BY delivery_id
    ON CONFLICT DO NOTHING RETURNING delivery_id
),
fresh AS (
    -- DISTINCT: a batch may carry the same message (so the same events) twice.
    SELECT DISTINCT ON (ev.event_id) ev.*, coalesce(ev.at, now()) AS t
    FROM ev JOIN marked USING (delivery_id) ORDER BY ev.event_id
),
execution_in AS (
    -- "First"/"last" are by event id: array_agg(... ORDER BY event_id)[1] is the first such event's value.
    SELECT execution_id, count(*) AS event_count,
           (array_agg(catalog_id ORDER BY event_id) FILTER (WHERE catalog_id IS NOT NULL))[1] AS catalog_id,
           (array_agg(node_name ORDER BY event_id)
                FILTER (WHERE event_type = 'playbook.initialized' AND node_name IS NOT NULL))[1] AS path,
           coalesce((array_agg(terminal ORDER BY event_id) FILTER (WHERE terminal IS NOT NULL))[1],
                    'RUNNING') AS status,
           min(t) AS started_at,
           (array_agg(t ORDER BY event_id) FILTER (WHERE terminal IS NOT NULL))[1] AS ended_at,
           max(event_id) AS last_event_id,
           (array_agg(event_type ORDER BY event_id DESC))[1] AS last_event_type,
           -- last_step and error keep the newest non-null value; an older one only fills a gap.
           max(event_id) FILTER (WHERE node_name IS NOT NULL) AS step_newest_id,
           (array_agg(node_name ORDER BY event_id DESC) FILTER (WHERE node_name IS NOT NULL))[1] AS step_newest,
           (array_agg(node_name ORDER BY event_id) FILTER (WHERE node_name IS NOT NULL))[1] AS step_oldest,
           max(event_id) FILTER (WHERE error IS NOT NULL) AS error_newest_id,
           (array_agg(error ORDER BY event_id DESC) FILTER (WHERE error IS NOT NULL))[1] AS error_newest,
           (array_agg(error ORDER BY event_id) FILTER (WHERE error IS NOT NULL))[1] AS error_oldest,
           count(*) FILTER (WHERE event_type = 'step.exit') AS step_count,  -- the engine emits one per step run
           count(*) FILTER (WHERE event_type = 'step.failed') AS failed_step_count
    FROM fresh GROUP BY execution_id
),
summary AS (
    INSERT INTO noetl.execution_summary AS s (execution_id, catalog_id, path, status, started_at, ended_at,
           duration_ms, event_count, last_event_id, last_event_type, last_step, error, step_count,
           failed_step_count)
    SELECT execution_id, catalog_id, path, status, started_at, ended_at,
           extract(epoch FROM ended_at - started_at) * 1000, event_count, last_event_id, last_event_type,
           step_newest, error_newest, step_count, failed_step_count
    FROM execution_in ORDER BY execution_id
    ON CONFLICT (execution_id) DO UPDATE SET
        event_count = s.event_count + EXCLUDED.event_count,
        path = coalesce(s.path, EXCLUDED.path),
        catalog_id = coalesce(s.catalog_id, EXCLUDED.catalog_id),
        status = CASE WHEN s.status IN ('COMPLETED', 'FAILED', 'CANCELLED') THEN s.status ELSE EXCLUDED.status END,
        started_at = least(s.started_at, EXCLUDED.started_at),
        ended_at = coalesce(s.ended_at, EXCLUDED.ended_at),
        duration_ms = extract(epoch FROM coalesce(s.ended_at, EXCLUDED.ended_at)
                                         - least(s.started_at, EXCLUDED.started_at)) * 1000,
        last_event_id = greatest(s.last_event_id, EXCLUDED.last_event_id),
        last_event_type = CASE WHEN EXCLUDED.last_event_id > coalesce(s.last_event_id, 0)
                               THEN EXCLUDED.last_event_type ELSE s.last_event_type END,
        -- Whether the batch's newest value is newer than the row's depends on the row, which is
        -- only known here (a concurrent fold may have changed it since the statement began).
        (last_step, error) = (
            SELECT CASE WHEN i.step_newest_id > coalesce(s.last_event_id, 0) THEN i.step_newest
                        ELSE coalesce(s.last_step, i.step_oldest) END,
                   CASE WHEN i.error_newest_id > coalesce(s.last_event_id, 0) THEN i.error_newest
                        ELSE coalesce(s.error, i.error_oldest) END
            FROM execution_in i WHERE i.execution_id = s.execution_id),
        step_count = s.step_count + EXCLUDED.step_count,
        failed_step_count = s.failed_step_count + EXCLUDED.failed_step_count, updated_at = now()
),
run_in AS (
    -- One step run per (execution, command).
    SELECT execution_id, command_id AS entry_id, count(*) AS events,
           coalesce((array_agg(node_name ORDER BY event_id))[1], '?') AS step,
           (array_agg(iteration ORDER BY event_id))[1] AS iteration,
           max(coalesce(attempt, 1)) AS attempt,
           -- The first finished status sticks; otherwise the furthest along.
           coalesce((array_agg(step_status ORDER BY event_id)
                         FILTER (WHERE step_status IN ('COMPLETED', 'FAILED')))[1],
                    (array_agg(step_status ORDER BY array_position(ARRAY['ISSUED', 'CLAIMED', 'RUNNING'],
                                                                  step_status) DESC))[1]) AS status,
           (array_agg(worker_id ORDER BY event_id DESC) FILTER (WHERE worker_id IS NOT NULL))[1] AS worker_id,
           min(t) AS issued_at,
           min(t) FILTER (WHERE step_status = 'RUNNING') AS started_at,
           (array_agg(t ORDER BY event_id) FILTER (WHERE step_status IN ('COMPLETED', 'FAILED')))[1] AS ended_at,
           (array_agg(error ORDER BY event_id DESC) FILTER (WHERE error IS NOT NULL))[1] AS error,
           max(event_id) AS last_event_id
    FROM fresh WHERE step_status IS NOT NULL AND command_id IS NOT NULL
    GROUP BY execution_id, command_id
),
timeline AS (
    INSERT INTO noetl.step_timeline AS t (execution_id, entry_id, step, iteration, attempt, status, worker_id,
           issued_at, started_at, ended_at, duration_ms, error, last_event_id)
    SELECT execution_id, entry_id, step, iteration, attempt, status, worker_id, issued_at, started_at, ended_at,
           -- A run first seen through one event has no duration yet (as when folded event by event).
           CASE WHEN events > 1 THEN extract(epoch FROM ended_at - coalesce(started_at, issued_at)) * 1000 END,
           error, last_event_id
    FROM run_in ORDER BY execution_id, entry_id
    ON CONFLICT (execution_id, entry_id) DO UPDATE SET
        -- A finished status sticks; otherwise the furthest along wins, whatever the arrival order.
        status = CASE WHEN t.status IN ('COMPLETED', 'FAILED') THEN t.status
                      WHEN EXCLUDED.status IN ('COMPLETED', 'FAILED') THEN EXCLUDED.status
                      WHEN array_position(ARRAY['ISSUED', 'CLAIMED', 'RUNNING'], EXCLUDED.status)
                         > array_position(ARRAY['ISSUED', 'CLAIMED', 'RUNNING'], t.status)
                      THEN EXCLUDED.status ELSE t.status END,
        worker_id = coalesce(EXCLUDED.worker_id, t.worker_id), attempt = greatest(t.attempt, EXCLUDED.attempt),
        issued_at = least(t.issued_at, EXCLUDED.issued_at),
        started_at = least(t.started_at, EXCLUDED.started_at),
        ended_at = coalesce(t.ended_at, EXCLUDED.ended_at),
        duration_ms = extract(epoch FROM coalesce(t.ended_at, EXCLUDED.ended_at)
                           - coalesce(least(t.started_at, EXCLUDED.started_at),
                                      least(t.issued_at, EXCLUDED.issued_at))) * 1000,
        error = coalesce(EXCLUDED.error, t.error),
        last_event_id = greatest(t.last_event_id, EXCLUDED.last_event_id), updated_at = now()
)
SELECT count(*) FROM fresh
"""


async def fold_batch(conn: asyncpg.Connection, deliveries: list[Delivery]) -> int:
    """Apply the deliveries not applied before, in one statement (atomic on its own); returns how
    many events were applied."""
    return await conn.fetchval(FOLD_SQL, *_columns(deliveries))


def _columns(deliveries: list[Delivery]) -> list[list[Any]]:
    """The batch as the statement's column arrays (one element per event)."""
    rows = [(d.delivery_id, e.event_id, e.execution_id, e.event_type, e.node_name, e.command_id, e.worker_id,
             e.attempt, e.iteration, e.error, e.catalog_id, e.at, TERMINAL.get(e.event_type),
             STEP_STATUS.get(e.event_type)) for d in deliveries for e in d.events]
    return [list(column) for column in zip(*rows)] if rows else [[] for _ in range(14)]


MARKER_RETENTION_SECONDS = 86_400.0


async def purge_markers(conn: asyncpg.Connection, limit: int,
                        older_than_seconds: float = MARKER_RETENTION_SECONDS) -> int:
    """Forget which deliveries were projected once they are a day old: redeliveries come within the
    projector's ack wait, not days later."""
    status = await conn.execute(
        "DELETE FROM noetl.projected_delivery WHERE delivery_id IN (SELECT delivery_id "
        "FROM noetl.projected_delivery WHERE projected_at < now() - make_interval(secs => $1::float8) LIMIT $2)",
        older_than_seconds, limit)
    return int(status.split()[-1])
