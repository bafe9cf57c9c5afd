"""GET /api/commands/{event_id} and POST /api/commands/{event_id}/claim.

Exactly one worker wins a claim. The first claim of a command this process issued is one
optimistic statement that applies only while the command is still ISSUED; a claim the claim book
knows is held is refused at once; anything else takes the execution's lock (every writer of a
command holds it). The later claimers find it taken: 409 `active_claim` — the same worker asking
again too, as on NoETL's server (a worker whose answer was lost leaves the command to its lease).
A claim is a lease and starts the command: `command.claimed` and `command.started` are written in
the claim's transaction, and the answer says `started: true` so the worker does not post its own
`command.started` (a NoETL worker that does is answered as a re-send). Once the holder stops
showing signs of life past the lease, the next claimer takes the command over as a new attempt,
up to max_attempts; past that the step fails.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping

import msgspec
from aiohttp import web

from noetl_common.errors import ApiError, error_response, json_response, not_found, read_json
from noetl_common.observability import execution_id_var
from noetl_common.pools import DEFAULT_POOL
from noetl_common.wire.execution import ClaimRequest, CommandOut

from ...state import services
from ...store import commands as command_store
from ...store import executions as execution_store
from ..keys import ORCHESTRATOR
from ..write.claiming import grant
from ..write.orchestration import TERMINAL, Orchestrator
from ..write.txn import Fallback
from ..write.ownership import owned_path_id

RETRY_AFTER = {"Retry-After": "2"}
# NoETL's name for a tool kind where it differs: a task list is its worker's `task_sequence` (the
# fleet's worker takes either name).
NOETL_ACTION = {"pipeline": "task_sequence"}


def command_out(cmd: Mapping[str, Any], *, claimed: bool = False) -> CommandOut:
    """A command (row or mapping) as NoETL's command/claim response."""
    command_id = cmd["command_id"]
    meta = {"command_id": command_id, "step": cmd["step"], "tool_kind": cmd["tool_kind"],
            "attempt": cmd["attempt"], "max_attempts": cmd["max_attempts"],
            "execution_id": str(cmd["execution_id"]), "catalog_id": str(cmd["catalog_id"] or ""),
            "iteration": cmd["iteration"], "pool": cmd["pool"]}
    out = CommandOut(execution_id=cmd["execution_id"], node_id=cmd["step"], node_name=cmd["step"],
                     action=NOETL_ACTION.get(cmd["tool_kind"], cmd["tool_kind"]), context=cmd["context"] or {},
                     meta=meta, event_id=command_id,
                     command_id=str(command_id), attempt=cmd["attempt"], max_attempts=cmd["max_attempts"],
                     status="ok" if claimed else cmd["status"])
    if claimed:
        out.started = True
    return out


async def get_command(request: web.Request) -> web.Response:
    svc = services(request)
    command_id = owned_path_id(request, "event_id")
    await request.app[ORCHESTRATOR].claims.settled(command_id)  # announced while its transaction was committing
    row = await command_store.get(svc.shard_pool, command_id)
    if row is None:
        raise not_found(f"command not found: {command_id}")
    execution_id_var.set(str(row["execution_id"]))
    return json_response(command_out(row))


def _active_claim(svc: Any, worker_id: str) -> ApiError:
    svc.metrics.claim_conflict()
    return ApiError(409, f"Command already claimed by {worker_id}", "active_claim", headers=RETRY_AFTER,
                    worker_id=worker_id)


async def _claim_issued(orch: Orchestrator, svc: Any, row: dict[str, Any], worker: str, lease_seconds: float,
                        meta: dict[str, Any]) -> bool:
    """The first claim of a command this process issued (`row`, as written), in one optimistic
    statement (no lock, no read): it applies only while the command is still ISSUED. False: the
    database must decide."""
    try:
        async with orch.optimistic(row["execution_id"]) as txn:
            ex = txn.loaded[row["execution_id"]]
            if ex.status in TERMINAL or row["command_id"] not in ex.state.pending:
                raise Fallback("the engine no longer waits for this command")
            held = orch.claims.holder(row["command_id"])
            if held is not None:  # the other consumer's claim committed while this one waited
                raise _active_claim(svc, held.worker_id)
            grant(txn.uow, svc.mint_owned_id, row, worker, 1, lease_seconds, meta, if_issued=True)
    except Fallback:
        orch.claims.forget(row["command_id"])
        return False
    return True


def make_claim_handler(orch: Orchestrator, lease_seconds: float):
    async def claim_command(request: web.Request) -> web.Response:
        svc = services(request)
        command_id = owned_path_id(request, "event_id")
        body = await read_json(request, ClaimRequest)
        worker = body.worker_id.strip()  # not blank: ClaimRequest says so
        meta: dict[str, Any] = {"locality": body.locality} if body.locality else {}
        waited = await orch.claims.settled(command_id)  # announced while its transaction was committing
        if waited is not None:
            svc.metrics.claim_waited(waited)
        held = orch.claims.holder(command_id)
        if held is not None:  # taken, and its lease surely runs: no need to lock and read it
            execution_id_var.set(str(held.execution_id))
            raise _active_claim(svc, held.worker_id)
        issued = orch.claims.issued(command_id)
        if issued is not None:
            execution_id_var.set(str(issued.execution_id))
            written = msgspec.structs.asdict(issued)
            if await _claim_issued(orch, svc, written, worker, lease_seconds, meta):
                return _granted(svc, written, worker, 1)
        refusal: ApiError | None = None
        async with orch.transaction() as txn:
            execution = await execution_store.lock_of_command(txn.conn, command_id)
            row = await command_store.get(txn.conn, command_id) if execution is not None else None
            if row is None or execution is None:
                raise not_found(f"command not found: {command_id}")
            execution_id_var.set(str(row["execution_id"]))  # routed by command id: now we know it
            if row["status"] in command_store.TERMINAL:
                raise ApiError(409, f"Command status: {row['status']}", "already_terminal")
            if execution["status"] in TERMINAL:
                raise ApiError(409, "Execution already reached a terminal state", "already_terminal")
            attempt = row["attempt"]
            if row["status"] in ("CLAIMED", "RUNNING"):
                # Taken, whoever asks (NoETL's rule): a worker holding two consumers that both see a
                # notification claims it twice, and a second 200 would run its tool twice.
                if row["lease_expires_at"] and row["lease_expires_at"] > datetime.now(timezone.utc):
                    raise _active_claim(svc, row["worker_id"])
                meta.update(reclaimed=True, reclaimed_from_worker=row["worker_id"], reclaimed_reason="lease_expired")
                attempt += 1
                if attempt > row["max_attempts"]:
                    # The step failure is committed; the 409 is answered after the transaction.
                    await orch.fail_command(txn, row, f"worker {row['worker_id']} stopped responding; "
                                                      f"{row['max_attempts']} attempt(s) exhausted")
                    refusal = ApiError(409, "Command failed: attempts exhausted", "already_terminal")
            if refusal is None:
                grant(txn.uow, svc.mint_owned_id, row, worker, attempt, lease_seconds, meta)
        if refusal is not None:
            return error_response(refusal)
        return _granted(svc, dict(row), worker, attempt)

    return claim_command


def _granted(svc: Any, row: dict[str, Any], worker: str, attempt: int) -> web.Response:
    if attempt == 1:  # a takeover's wait is the lease, not pickup
        svc.metrics.command_picked_up(row["command_id"], row["pool"] or DEFAULT_POOL, "notification")
    return json_response(command_out({**row, "attempt": attempt, "status": "RUNNING", "worker_id": worker},
                                     claimed=True))

