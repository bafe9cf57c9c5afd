"""What a shard still holds: the figures that say whether a draining shard is done."""

from __future__ import annotations

import asyncpg
import msgspec


class Holdings(msgspec.Struct, frozen=True):
    running_executions: int
    total_executions: int
    outbox_pending: int                  # rows not yet published (pending, claimed or failed)


async def holdings(pool: asyncpg.Pool) -> Holdings:
    # Running uses the partial index on unfinished executions. Published outbox rows are
    # deleted when the publisher reports them; any 'published' left over is not pending.
    row = await pool.fetchrow(
        """SELECT (SELECT count(*) FROM noetl.execution WHERE status IN ('PENDING', 'RUNNING')) AS running,
                  (SELECT count(*) FROM noetl.execution) AS total,
                  (SELECT count(*) FROM noetl.outbox WHERE status <> 'published') AS outbox""")
    return Holdings(running_executions=row["running"], total_executions=row["total"], outbox_pending=row["outbox"])
