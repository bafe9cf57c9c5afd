"""Read models folded from published events: execution summaries and per-step timelines.

Exactly once, in any order. A projector that dies leaves its batch unacked; JetStream redelivers
it only after the ack wait, by which time its successor has folded newer events. So an event is
folded once, and only once: its id goes into `projected_event` first, and only ids that were not
there yet are applied. The fold itself commutes: counts add, times take least/greatest, a
terminal status sticks, and "last" fields follow the highest event id.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import asyncpg

TERMINAL = {"playbook.completed": "COMPLETED", "playbook.failed": "FAILED", "execution.cancelled": "CANCELLED"}
STEP_STATUS = {"command.issued": "ISSUED", "command.claimed": "CLAIMED", "command.started": "RUNNING",
               "call.done": "COMPLETED", "command.completed": "COMPLETED", "call.error": "FAILED",
               "command.failed": "FAILED"}


async def fold_batch(conn: asyncpg.Connection, events: list[dict[str, Any]]) -> int:
    """Apply the events not applied before (caller holds a transaction); returns how many."""
    fresh = {r["event_id"] for r in await conn.fetch(
        "INSERT INTO noetl.projected_event (event_id, execution_id) "
        "SELECT * FROM unnest($1::bigint[], $2::bigint[]) ON CONFLICT DO NOTHING RETURNING event_id",
        [int(e["event_id"]) for e in events], [int(e["execution_id"]) for e in events])}
    applied = 0
    for e in sorted(events, key=lambda ev: int(ev["event_id"])):
        if int(e["event_id"]) in fresh:
            fresh.discard(int(e["event_id"]))  # a batch may carry the same event twice
            await _fold(conn, e)
            applied += 1
    return applied


async def _fold(conn: asyncpg.Connection, e: dict[str, Any]) -> None:
    eid, xid, kind = int(e["event_id"]), int(e["execution_id"]), e.get("event_type") or ""
    status = TERMINAL.get(kind)
    # The event's own time, so a lagging projector still records when things happened.
    at = datetime.fromtimestamp(int(e["event_time_ms"]) / 1000, timezone.utc) if e.get("event_time_ms") else None
    await conn.execute(
        """
        INSERT INTO noetl.execution_summary AS s (execution_id, catalog_id, path, status, started_at, ended_at,
               duration_ms, event_count, last_event_id, last_event_type, last_step, error, step_count,
               failed_step_count)
        VALUES ($1, $2, CASE WHEN $3 = 'playbook.initialized' THEN $4 END, coalesce($5, 'RUNNING'),
                coalesce($8, now()), CASE WHEN $5 IS NOT NULL THEN coalesce($8, now()) END,
                CASE WHEN $5 IS NOT NULL THEN 0 END, 1, $6, $3, $4, $7,
                CASE WHEN $3 = 'step.exit' THEN 1 ELSE 0 END,  -- the engine emits these once per step run
                CASE WHEN $3 = 'step.failed' THEN 1 ELSE 0 END)
        ON CONFLICT (execution_id) DO UPDATE SET
            event_count = s.event_count + 1,
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
            last_step = CASE WHEN EXCLUDED.last_event_id > coalesce(s.last_event_id, 0)
                             THEN coalesce(EXCLUDED.last_step, s.last_step) ELSE coalesce(s.last_step, EXCLUDED.last_step) END,
            error = CASE WHEN EXCLUDED.last_event_id > coalesce(s.last_event_id, 0)
                         THEN coalesce(EXCLUDED.error, s.error) ELSE coalesce(s.error, EXCLUDED.error) END,
            step_count = s.step_count + EXCLUDED.step_count,
            failed_step_count = s.failed_step_count + EXCLUDED.failed_step_count, updated_at = now()
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
            """,
            xid, int(e["command_id"]), e.get("node_name"), e.get("iteration"), e.get("attempt"), step_status,
            e.get("worker_id"), e.get("error"), eid, at)


def _int(value: Any) -> int | None:
    return int(value) if value not in (None, "") else None


MARKER_RETENTION_SECONDS = 86_400.0


async def purge_markers(conn: asyncpg.Connection, limit: int,
                        older_than_seconds: float = MARKER_RETENTION_SECONDS) -> int:
    """Forget which events were projected once they are a day old: redeliveries come within the
    projector's ack wait, not days later."""
    status = await conn.execute(
        "DELETE FROM noetl.projected_event WHERE event_id IN (SELECT event_id FROM noetl.projected_event "
        "WHERE projected_at < now() - make_interval(secs => $1::float8) LIMIT $2)", older_than_seconds, limit)
    return int(status.split()[-1])
