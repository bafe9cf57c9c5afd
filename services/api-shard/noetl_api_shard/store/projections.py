"""Read models folded from published events: execution summaries and per-step timelines.

Idempotent: each row remembers the last event folded into it and ignores any event that is not
newer, so a redelivered event changes nothing. (Events of one execution are published in log
order, from one outbox, so "not newer" only ever drops redeliveries.)
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import asyncpg

TERMINAL = {"playbook.completed": "COMPLETED", "playbook.failed": "FAILED", "execution.cancelled": "CANCELLED"}
STEP_STATUS = {"command.issued": "ISSUED", "command.claimed": "CLAIMED", "command.started": "RUNNING",
               "call.done": "COMPLETED", "command.completed": "COMPLETED", "call.error": "FAILED",
               "command.failed": "FAILED"}


async def fold(conn: asyncpg.Connection, e: dict[str, Any]) -> bool:
    """Apply one event envelope; True when it changed a read model."""
    eid, xid, kind = int(e["event_id"]), int(e["execution_id"]), e.get("event_type") or ""
    status = TERMINAL.get(kind)
    # The event's own time, so a lagging projector still records when things happened.
    at = datetime.fromtimestamp(int(e["event_time_ms"]) / 1000, timezone.utc) if e.get("event_time_ms") else None
    changed = await conn.execute(
        """
        INSERT INTO noetl.execution_summary AS s (execution_id, catalog_id, path, status, started_at, ended_at,
               event_count, last_event_id, last_event_type, last_step, error, step_count, failed_step_count)
        VALUES ($1, $2, CASE WHEN $3 = 'playbook.initialized' THEN $4 END, coalesce($5, 'RUNNING'),
                coalesce($8, now()), CASE WHEN $5 IS NOT NULL THEN coalesce($8, now()) END, 1, $6, $3, $4, $7,
                CASE WHEN $3 = 'step.exit' THEN 1 ELSE 0 END,  -- the engine emits these once per step run
                CASE WHEN $3 = 'step.failed' THEN 1 ELSE 0 END)
        ON CONFLICT (execution_id) DO UPDATE SET
            event_count = s.event_count + 1,
            path = coalesce(s.path, EXCLUDED.path),
            catalog_id = coalesce(s.catalog_id, EXCLUDED.catalog_id),
            status = CASE WHEN s.status IN ('COMPLETED', 'FAILED', 'CANCELLED') THEN s.status ELSE EXCLUDED.status END,
            ended_at = coalesce(s.ended_at, EXCLUDED.ended_at),
            duration_ms = CASE WHEN EXCLUDED.ended_at IS NOT NULL AND s.ended_at IS NULL
                               THEN extract(epoch FROM EXCLUDED.ended_at - s.started_at) * 1000 ELSE s.duration_ms END,
            last_event_id = EXCLUDED.last_event_id, last_event_type = EXCLUDED.last_event_type,
            last_step = coalesce(EXCLUDED.last_step, s.last_step), error = coalesce(EXCLUDED.error, s.error),
            step_count = s.step_count + EXCLUDED.step_count,
            failed_step_count = s.failed_step_count + EXCLUDED.failed_step_count, updated_at = now()
        WHERE EXCLUDED.last_event_id > coalesce(s.last_event_id, 0)
        """,
        xid, _int(e.get("catalog_id")), kind, e.get("node_name"), status, eid, e.get("error"), at)
    step_status = STEP_STATUS.get(kind)
    if step_status and e.get("command_id"):
        await conn.execute(
            """
            INSERT INTO noetl.step_timeline AS t (execution_id, entry_id, step, iteration, attempt, status, worker_id,
                   issued_at, started_at, ended_at, error, last_event_id)
            VALUES ($1, $2, coalesce($3, '?'), $4, coalesce($5, 1), $6, $7, coalesce($10, now()),
                    CASE WHEN $6 = 'RUNNING' THEN coalesce($10, now()) END,
                    CASE WHEN $6 IN ('COMPLETED', 'FAILED') THEN coalesce($10, now()) END, $8, $9)
            ON CONFLICT (execution_id, entry_id) DO UPDATE SET
                status = CASE WHEN t.status IN ('COMPLETED', 'FAILED') THEN t.status ELSE EXCLUDED.status END,
                worker_id = coalesce(EXCLUDED.worker_id, t.worker_id), attempt = greatest(t.attempt, EXCLUDED.attempt),
                started_at = coalesce(t.started_at, EXCLUDED.started_at),
                ended_at = coalesce(t.ended_at, EXCLUDED.ended_at),
                duration_ms = CASE WHEN t.ended_at IS NULL AND EXCLUDED.ended_at IS NOT NULL
                                   THEN extract(epoch FROM EXCLUDED.ended_at - coalesce(t.started_at, t.issued_at)) * 1000
                                   ELSE t.duration_ms END,
                error = coalesce(EXCLUDED.error, t.error), last_event_id = EXCLUDED.last_event_id, updated_at = now()
            WHERE EXCLUDED.last_event_id > coalesce(t.last_event_id, 0)
            """,
            xid, int(e["command_id"]), e.get("node_name"), e.get("iteration"), e.get("attempt"), step_status,
            e.get("worker_id"), e.get("error"), eid, at)
    return changed.endswith(" 1")


def _int(value: Any) -> int | None:
    return int(value) if value not in (None, "") else None
