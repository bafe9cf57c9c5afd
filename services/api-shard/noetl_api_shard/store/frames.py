"""noetl.stage and noetl.frame (shard DB), NoETL's frames runtime. A stage row is written with the
engine's transaction (store.writes, `ins_stage`/`upd_stage`); these are the frames routes' reads
and writes, each run inside the route's transaction. Routes name only a stage or a frame, so rows
are found by their id alone (indexed in every slice, like command_id)."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

_FRAME = ("f.frame_id, f.stage_id, f.execution_id, f.parent_frame_id, f.command_id, f.claimed_event_id, "
          "f.terminal_event_id, f.cursor, f.row_count, f.status, f.owner_worker, f.lease_until, f.output_ref, "
          "f.events_emitted, f.attempts")
# What a frame event needs besides the frame: its step (node_name) and its execution's catalog id.
_CONTEXT = ("s.step_name, s.frame_policy, s.tenant_id, s.organization_id, x.catalog_id, "
            "x.status AS execution_status, now() AS db_now")
_JOINS = ("JOIN noetl.stage s ON s.execution_id = f.execution_id AND s.stage_id = f.stage_id "
          "JOIN noetl.execution x ON x.execution_id = f.execution_id")


async def stage(conn: asyncpg.Connection, stage_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT s.stage_id, s.execution_id, s.step_name, s.status, s.frame_policy, s.tenant_id, s.organization_id, "
        "x.catalog_id, x.status AS execution_status, now() AS db_now FROM noetl.stage s "
        "JOIN noetl.execution x ON x.execution_id = s.execution_id WHERE s.stage_id = $1", stage_id)


async def by_key(conn: asyncpg.Connection, execution_id: int, stage_id: int, slot: str,
                 index: str) -> asyncpg.Record | None:
    """The frame under a claim key, locked (any status: a finished one refuses the claim)."""
    return await conn.fetchrow(
        f"SELECT {_FRAME} FROM noetl.frame f WHERE f.execution_id = $1 AND f.stage_id = $2 "
        f"AND f.cursor ? 'worker_slot_id' AND f.cursor ? 'frame_index' "
        f"AND f.cursor->>'worker_slot_id' = $3 AND f.cursor->>'frame_index' = $4 FOR UPDATE",
        execution_id, stage_id, slot, index)


async def claimable(conn: asyncpg.Connection, execution_id: int, stage_id: int) -> asyncpg.Record | None:
    """The stage's oldest pending or lapsed frame, locked (another claimer skips it)."""
    return await conn.fetchrow(
        f"SELECT {_FRAME} FROM noetl.frame f WHERE f.execution_id = $1 AND f.stage_id = $2 "
        f"AND (f.status = 'PENDING' OR (f.status IN ('CLAIMED', 'RUNNING') "
        f"     AND (f.lease_until IS NULL OR f.lease_until < now()))) "
        f"ORDER BY f.frame_id LIMIT 1 FOR UPDATE SKIP LOCKED", execution_id, stage_id)


async def latest(conn: asyncpg.Connection, execution_id: int, stage_id: int) -> int | None:
    """The stage's newest frame: a new frame's parent (NoETL's parent_frame_id)."""
    return await conn.fetchval("SELECT max(frame_id) FROM noetl.frame WHERE execution_id = $1 AND stage_id = $2",
                               execution_id, stage_id)


async def locked(conn: asyncpg.Connection, frame_id: int) -> asyncpg.Record | None:
    """A frame with its stage's and execution's context, locked for a heartbeat or a commit."""
    return await conn.fetchrow(f"SELECT {_FRAME}, {_CONTEXT} FROM noetl.frame f {_JOINS} "
                               f"WHERE f.frame_id = $1 FOR UPDATE OF f", frame_id)


async def insert(conn: asyncpg.Connection, *, frame_id: int, stage_id: int, execution_id: int,
                 parent_frame_id: int | None, cursor: dict[str, Any], command_id: int | None,
                 tenant_id: str, organization_id: str) -> asyncpg.Record | None:
    """A new PENDING frame; None when a concurrent claim minted the same claim key first."""
    return await conn.fetchrow(
        f"INSERT INTO noetl.frame AS f (frame_id, stage_id, execution_id, parent_frame_id, cursor, command_id, "
        f"tenant_id, organization_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING "
        f"RETURNING {_FRAME}",
        frame_id, stage_id, execution_id, parent_frame_id, cursor, command_id, tenant_id, organization_id)


async def claim(conn: asyncpg.Connection, frame_id: int, execution_id: int, *, worker: str, command_id: int | None,
                lease_seconds: int, claimed_event_id: int) -> asyncpg.Record:
    return await conn.fetchrow(
        f"UPDATE noetl.frame f SET status = 'CLAIMED', owner_worker = $3, command_id = coalesce(f.command_id, $4), "
        f"claimed_event_id = $6, lease_until = now() + make_interval(secs => $5), attempts = f.attempts + 1, "
        f"updated_at = now() WHERE f.execution_id = $2 AND f.frame_id = $1 RETURNING {_FRAME}",
        frame_id, execution_id, worker, command_id, lease_seconds, claimed_event_id)


async def extend(conn: asyncpg.Connection, frame_id: int, execution_id: int, *, lease_seconds: int,
                 status: str | None = None) -> asyncpg.Record:
    """A renewed claim (status None) or a heartbeat (its status)."""
    return await conn.fetchrow(
        f"UPDATE noetl.frame f SET status = coalesce($4, f.status), "
        f"lease_until = now() + make_interval(secs => $3), updated_at = now() "
        f"WHERE f.execution_id = $2 AND f.frame_id = $1 RETURNING {_FRAME}",
        frame_id, execution_id, lease_seconds, status)


async def finish(conn: asyncpg.Connection, frame_id: int, execution_id: int, *, status: str, cursor: dict[str, Any] | None,
                 row_count: int | None, output_ref: dict[str, Any] | None, events_emitted: int | None,
                 terminal_event_id: int) -> asyncpg.Record:
    """COMPLETED or FAILED (a commit; or a lapsed frame out of attempts: the Nones keep the columns).
    The committed cursor is merged into the frame's, so its claim key stays (a later claim under
    that key finds the finished frame instead of minting the frame again)."""
    return await conn.fetchrow(
        f"UPDATE noetl.frame f SET status = $3, cursor = f.cursor || coalesce($4::jsonb, '{{}}'::jsonb) "
        f"|| jsonb_strip_nulls(jsonb_build_object('worker_slot_id', f.cursor->'worker_slot_id', "
        f"'frame_index', f.cursor->'frame_index')), "
        f"row_count = coalesce($5, f.row_count), output_ref = coalesce($6, f.output_ref), "
        f"events_emitted = coalesce($7, f.events_emitted), terminal_event_id = $8, completed_at = now(), "
        f"updated_at = now() WHERE f.execution_id = $2 AND f.frame_id = $1 RETURNING {_FRAME}",
        frame_id, execution_id, status, cursor, row_count, output_ref, events_emitted, terminal_event_id)


class FrameEvent(msgspec.Struct, kw_only=True):
    """A frame's event in the execution's log, with NoETL's stage_id/frame_id columns set. Not
    mirrored to the projector (NoETL mirrors frame events only when asked to: they fold into no
    read model)."""

    event_id: int
    execution_id: int
    event_type: str
    node_name: str | None
    status: str
    catalog_id: int | None
    worker_id: str
    stage_id: int
    frame_id: int
    payload: dict[str, Any]
    meta: dict[str, Any]


async def log(conn: asyncpg.Connection, events: list[FrameEvent]) -> None:
    await conn.execute(
        "INSERT INTO noetl.event (event_id, execution_id, event_type, node_name, node_type, status, catalog_id, "
        "worker_id, payload, meta, stage_id, frame_id) "
        "SELECT x.event_id, x.execution_id, x.event_type, x.node_name, 'frame', x.status, x.catalog_id, x.worker_id, "
        "x.payload, x.meta, x.stage_id, x.frame_id FROM json_to_recordset($1::json) AS x(event_id bigint, "
        "execution_id bigint, event_type text, node_name text, status text, catalog_id bigint, worker_id text, "
        "payload jsonb, meta jsonb, stage_id bigint, frame_id bigint)", events)
