"""Recovers commands nobody is working on: a holder whose lease ran out (worker died) or an issued
command nobody claimed (notification lost). Each is re-announced on NATS through the outbox; a
command that has used all its attempts fails its step instead. The same pass purges day-old
projection markers.

Candidates are found without locks; each is then re-checked and handled in a transaction of its
own under its execution's lock, like every other writer of commands."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from noetl_common.background import Backoff, Loop, in_background
from noetl_common.vocabulary import AFTER

from ...store import commands as command_store
from ...store import executions as execution_store
from ...store import projections
from ...store.outbox import OutboxRow
from ..write.announcing import notification
from ..write.orchestration import Orchestrator

log = logging.getLogger("noetl.api_shard.reaper")

BATCH = 100
PURGE_BATCH = 5000


async def sweep(orch: Orchestrator, *, unclaimed_after_seconds: float) -> int:
    """Commands recovered in this pass."""
    pool = orch.svc.shard_pool
    handled = 0
    for command_id in await command_store.expired_leases(pool, BATCH):
        handled += await _recover_lease(orch, command_id)
    for command_id in await command_store.stale_unclaimed(pool, unclaimed_after_seconds, BATCH):
        handled += await _renotify(orch, command_id, unclaimed_after_seconds)
    async with pool.acquire() as conn:
        purged = await projections.purge_markers(conn, PURGE_BATCH)
    if purged:
        log.debug("purged %d projection marker(s)", purged)
    return handled


async def _recover_lease(orch: Orchestrator, command_id: int) -> int:
    async with orch.transaction() as txn:
        await execution_store.lock_of_command(txn.conn, command_id)
        cmd = await command_store.get(txn.conn, command_id)
        if cmd is None or not command_store.lease_expired(cmd, datetime.now(timezone.utc)):
            return 0  # finished or renewed meanwhile
        if await _waits(txn.conn, cmd):
            return 0
        if cmd["attempt"] >= cmd["max_attempts"]:
            await orch.fail_command(txn, cmd, f"worker {cmd['worker_id']} stopped responding; "
                                              f"{cmd['max_attempts']} attempt(s) exhausted")
            return 1
        await command_store.reissue(txn.conn, command_id)
        txn.uow.notify(_notification(orch, cmd))
    return 1


async def _renotify(orch: Orchestrator, command_id: int, older_than_seconds: float) -> int:
    async with orch.transaction() as txn:
        await execution_store.lock_of_command(txn.conn, command_id)
        cmd = await command_store.get(txn.conn, command_id)
        if cmd is None or cmd["status"] != "ISSUED" or \
                (datetime.now(timezone.utc) - cmd["updated_at"]).total_seconds() < older_than_seconds:
            return 0
        if await _waits(txn.conn, cmd):
            return 0
        await command_store.bump(txn.conn, command_id)
        txn.uow.notify(_notification(orch, cmd))
    return 1


async def _waits(conn: Any, cmd: Any) -> bool:
    """A sequential loop's iteration issued ahead waits until the one before it has ended (that
    ending announces it); until then the reaper leaves it alone, so it never runs beside it."""
    after = (cmd["context"] or {}).get(AFTER)
    if after is None:
        return False
    before = await command_store.get(conn, int(after))
    return before is not None and before["status"] not in command_store.TERMINAL


def _notification(orch: Orchestrator, cmd: Any) -> OutboxRow:
    return notification(orch.svc, command_id=cmd["command_id"], execution_id=cmd["execution_id"], step=cmd["step"],
                        pool=cmd["pool"], redelivery=True)


def install(app: web.Application, orch: Orchestrator, *, interval_seconds: float,
            unclaimed_after_seconds: float) -> None:
    async def step() -> None:
        n = await sweep(orch, unclaimed_after_seconds=unclaimed_after_seconds)
        if n:
            log.info("reaper recovered %d command(s)", n)

    # A failed sweep (database down) is tried again after the interval, then less and less often.
    loop = Loop("command-reaper", step, metrics=orch.svc.metrics.loops, interval=interval_seconds,
                first_delay=interval_seconds, backoff=Backoff(first=interval_seconds, cap=max(interval_seconds, 30.0)),
                logger=log)
    app.cleanup_ctx.append(in_background(loop))
