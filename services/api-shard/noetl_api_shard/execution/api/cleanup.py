"""`POST /api/executions/cleanup` (NoETL): cancel this shard's stuck executions — still PENDING or
RUNNING and created more than `older_than_minutes` ago — each in a transaction of its own, as the
cancel route does (children on this shard too). `dry_run` only lists them. The router sends the
same request to every shard and merges the answers. The cancelled executions' step- and
execution-scoped stored results (`/api/result`) are deleted with them."""

from __future__ import annotations

import msgspec
from aiohttp import web

from noetl_common.errors import json_response, read_json, unprocessable

from ...state import services
from ...store import executions as execution_store, results as result_store
from ..keys import ORCHESTRATOR
from ..write.cancelling import cancel_one

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
# 100 years: older than anything stored, and far inside Postgres's int4 minutes and timestamp range
# (an unbounded value overflowed the query: a 500, found by fuzzing).
MAX_OLDER_THAN_MINUTES = 100 * 366 * 24 * 60


class CleanupRequest(msgspec.Struct, kw_only=True):
    older_than_minutes: int = 5
    dry_run: bool = False
    limit: int = DEFAULT_LIMIT        # extension: at most this many per call (a bounded request time)


class CleanupResponse(msgspec.Struct, kw_only=True):
    cancelled_count: int
    execution_ids: list[str]
    message: str
    shard_index: int
    dry_run: bool
    results_deleted: int = 0


async def cleanup_stuck(request: web.Request) -> web.Response:
    svc = services(request)
    body = await read_json(request, CleanupRequest, allow_empty=True)
    if not 1 <= body.older_than_minutes <= MAX_OLDER_THAN_MINUTES:
        raise unprocessable(f"older_than_minutes must be between 1 and {MAX_OLDER_THAN_MINUTES}, "
                            f"got {body.older_than_minutes}")
    if not 1 <= body.limit <= MAX_LIMIT:
        raise unprocessable(f"limit must be between 1 and {MAX_LIMIT}, got {body.limit}")
    stuck = await execution_store.stuck(svc.shard_pool, body.older_than_minutes, body.limit)
    older = f"older than {body.older_than_minutes} minutes"
    if body.dry_run:
        ids = [str(i) for i in stuck]
        return json_response(CleanupResponse(cancelled_count=len(ids), execution_ids=ids, dry_run=True,
                                             message=f"[DRY RUN] Would cancel {len(ids)} stuck executions {older}",
                                             shard_index=svc.settings.shard_index))
    orch = request.app[ORCHESTRATOR]
    reason = f"Cleaned up stuck execution ({older})"
    cancelled: list[str] = []
    for execution_id in stuck:
        async with orch.transaction() as txn:
            await cancel_one(orch, txn, execution_id, reason, True, cancelled,
                             meta={"auto_cancelled": True, "cleanup_api": True})
    results_deleted = 0
    if cancelled:  # their step- and execution-scoped stored results go with them (NoETL's scopes)
        results_deleted = await result_store.delete(svc.shard_pool, [int(i) for i in cancelled], ["step", "execution"])
    message = (f"Successfully cancelled {len(cancelled)} stuck executions {older}" if cancelled
               else f"No stuck executions found {older}")
    return json_response(CleanupResponse(cancelled_count=len(cancelled), execution_ids=cancelled, message=message,
                                         dry_run=False, shard_index=svc.settings.shard_index,
                                         results_deleted=results_deleted))
