"""GET /api/commands/{event_id} and POST /api/commands/{event_id}/claim.

Exactly one worker wins a claim: the command row is locked NOWAIT, so a concurrent claimer gets an
immediate 409 instead of queueing. A claim is a lease; while it is live other workers get 409
`active_claim`. Once the holder stops showing signs of life past the lease, the next claimer takes
the command over as a new attempt, up to max_attempts; past that the step fails.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

import asyncpg
from aiohttp import web

from noetl_common.errors import ApiError, error_response, json_response, not_found, read_json
from noetl_common.wire.execution import ClaimRequest, CommandOut

from ..handlers.params import path_id
from ..state import services
from ..store import commands as command_store
from ..store import events as event_store
from ..store import executions as execution_store
from ..store.events import NewEvent
from .ownership import require_owned

RETRY_AFTER = {"Retry-After": "2"}

# (conn, command row, reason) -> None: records the command as failed and advances the engine.
FailCommand = Callable[[asyncpg.Connection, asyncpg.Record, str], Awaitable[None]]
# (conn, events) -> None: appends events and their outbox announcements.
AppendEvents = Callable[[asyncpg.Connection, list[NewEvent]], Awaitable[None]]


def command_out(row: asyncpg.Record, *, claimed: bool = False) -> dict[str, Any]:
    ctx = row["context"] or {}
    meta = {"command_id": row["command_id"], "step": row["step"], "tool_kind": row["tool_kind"],
            "attempt": row["attempt"], "max_attempts": row["max_attempts"],
            "execution_id": str(row["execution_id"]), "catalog_id": str(row["catalog_id"] or ""),
            "iteration": row["iteration"], "pool": row["pool"]}
    out = CommandOut(execution_id=row["execution_id"], node_id=row["step"], node_name=row["step"],
                     action=row["tool_kind"], context=ctx, meta=meta, event_id=row["command_id"],
                     command_id=str(row["command_id"]), attempt=row["attempt"], max_attempts=row["max_attempts"],
                     status="ok" if claimed else row["status"])
    return out


async def get_command(request: web.Request) -> web.Response:
    svc = services(request)
    command_id = path_id(request, "event_id")
    require_owned(svc, command_id, "event_id")
    row = await command_store.get(svc.shard_pool, command_id)
    if row is None:
        raise not_found(f"command not found: {command_id}")
    return json_response(command_out(row))


def make_claim_handler(fail_command: FailCommand, append_events: AppendEvents,
                       lease_seconds: float) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def claim_command(request: web.Request) -> web.Response:
        svc = services(request)
        command_id = path_id(request, "event_id")
        require_owned(svc, command_id, "event_id")
        body = await read_json(request, ClaimRequest)
        worker = body.worker_id.strip()
        if not worker:
            raise ApiError(400, "worker_id must be a non-empty string")
        async with svc.shard_pool.acquire() as conn, conn.transaction():
            try:
                row = await command_store.lock(conn, command_id)
            except asyncpg.LockNotAvailableError:
                svc.metrics.claim_conflict()
                raise ApiError(409, "Command is being claimed", "active_claim", headers=RETRY_AFTER) from None
            if row is None:
                raise not_found(f"command not found: {command_id}")
            if row["status"] in command_store.TERMINAL:
                raise ApiError(409, f"Command status: {row['status']}", "already_terminal")
            execution = await execution_store.get(conn, row["execution_id"])
            if execution is None or execution["status"] in execution_store.TERMINAL:
                raise ApiError(409, "Execution already reached a terminal state", "already_terminal")
            attempt = row["attempt"]
            reclaimed_from = None
            if row["status"] in ("CLAIMED", "RUNNING"):
                if row["worker_id"] == worker and row["status"] == "CLAIMED":
                    return json_response(command_out(row, claimed=True))  # idempotent re-claim
                lease_live = row["lease_expires_at"] and row["lease_expires_at"] > datetime.now(timezone.utc)
                if lease_live:
                    svc.metrics.claim_conflict()
                    raise ApiError(409, f"Command already claimed by {row['worker_id']}", "active_claim",
                                   headers=RETRY_AFTER, worker_id=row["worker_id"])
                reclaimed_from = row["worker_id"]
                attempt += 1
                if attempt > row["max_attempts"]:
                    # Record the step failure and commit it; the 409 is answered after the block
                    # (raising here would roll the failure back).
                    await fail_command(conn, row, f"worker {row['worker_id']} stopped responding; "
                                                  f"{row['max_attempts']} attempt(s) exhausted")
                    return error_response(ApiError(409, "Command failed: attempts exhausted", "already_terminal"))
            claimed = await command_store.claim(conn, command_id, worker, lease_seconds, attempt)
            meta = {"command_id": command_id, "worker_id": worker, "actionable": False}
            if reclaimed_from:
                meta.update(reclaimed=True, reclaimed_from_worker=reclaimed_from, reclaimed_reason="lease_expired")
            if body.locality:
                meta["locality"] = body.locality
            await append_events(conn, [NewEvent(
                event_id=svc.mint_owned_id(), execution_id=row["execution_id"], event_type="command.claimed",
                node_name=row["step"], node_type=row["tool_kind"], status="RUNNING", catalog_id=row["catalog_id"],
                command_id=command_id, worker_id=worker, attempt=attempt, iteration=row["iteration"],
                payload={"result": {"status": "RUNNING", "context": {"command_id": command_id}}}, meta=meta)])
        return json_response(command_out(claimed, claimed=True))

    return claim_command
