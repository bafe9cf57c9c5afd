"""Recovers commands nobody is working on: a holder whose lease ran out (worker died) or an issued
command nobody claimed (notification lost). Each is re-announced on NATS through the outbox; a
command that has used all its attempts fails its step instead. The same pass deletes published
outbox rows older than NOETL_OUTBOX_RETENTION_SECONDS and day-old projection markers."""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator

from aiohttp import web

from ..state import SERVICES
from ..store import commands as command_store
from ..store import outbox as outbox_store
from ..store import projections
from ..store.outbox import OutboxRow
from .ingest import fail_command
from .orchestration import DEFAULT_POOL, Orchestrator

log = logging.getLogger("noetl.api_shard.reaper")

BATCH = 100
PURGE_BATCH = 5000


async def sweep(app: web.Application, orch: Orchestrator, *, unclaimed_after_seconds: float,
                outbox_retention_seconds: float) -> int:
    """Commands recovered in this pass (published outbox rows past retention and day-old
    projection markers are purged too)."""
    svc = app[SERVICES]
    handled = 0
    async with svc.shard_pool.acquire() as conn, conn.transaction():
        for cmd in await command_store.expired_leases(conn, BATCH):
            handled += 1
            if cmd["attempt"] >= cmd["max_attempts"]:
                await fail_command(svc, orch, conn, cmd, f"worker {cmd['worker_id']} stopped responding; "
                                                         f"{cmd['max_attempts']} attempt(s) exhausted")
                continue
            await conn.execute("UPDATE noetl.command SET status = 'ISSUED', attempt = attempt + 1, worker_id = NULL, "
                               "lease_expires_at = NULL, updated_at = now() WHERE command_id = $1",
                               cmd["command_id"])
            await _renotify(svc, conn, cmd)
        for cmd in await command_store.stale_unclaimed(conn, unclaimed_after_seconds, BATCH):
            handled += 1
            await command_store.bump(conn, cmd["command_id"])
            await _renotify(svc, conn, cmd)
    # Housekeeping in statements of their own: no need to hold the recovered commands' locks for it.
    async with svc.shard_pool.acquire() as conn:
        purged = await outbox_store.purge_published(conn, outbox_retention_seconds, PURGE_BATCH)
        purged += await projections.purge_markers(conn, PURGE_BATCH)
    if purged:
        log.debug("purged %d published outbox row(s) and projection marker(s)", purged)
    return handled


async def _renotify(svc, conn, cmd) -> None:
    pool = cmd["pool"] or DEFAULT_POOL
    await outbox_store.enqueue(conn, [OutboxRow(
        id=svc.mint_owned_id(), execution_id=cmd["execution_id"], event_id=cmd["command_id"],
        subject=f"noetl.commands.{pool}.{cmd['execution_id']}",
        payload={"execution_id": cmd["execution_id"], "event_id": cmd["command_id"],
                 "command_id": str(cmd["command_id"]), "step": cmd["step"], "execution_pool": pool,
                 "redelivery": True})])


def install(app: web.Application, orch_key: web.AppKey, *, interval_seconds: float,
            unclaimed_after_seconds: float, outbox_retention_seconds: float) -> None:
    async def loop(app: web.Application) -> AsyncIterator[None]:
        async def run() -> None:
            while True:
                await asyncio.sleep(interval_seconds)
                try:
                    n = await sweep(app, app[orch_key], unclaimed_after_seconds=unclaimed_after_seconds,
                                    outbox_retention_seconds=outbox_retention_seconds)
                    if n:
                        log.info("reaper recovered %d command(s)", n)
                except Exception:
                    log.exception("reaper sweep failed; retrying next interval")

        task = asyncio.create_task(run(), name="command-reaper")
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    app.cleanup_ctx.append(loop)
