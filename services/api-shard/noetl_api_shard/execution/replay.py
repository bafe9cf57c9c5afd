"""Fold an execution's event log back through the engine. The result must equal the state the
shard stored incrementally (GET /api/replay/state shows both checksums)."""

from __future__ import annotations

from typing import Any, Iterator

import asyncpg

from . import engine_port as engine
from .orchestration import engine_time
from .worker_events import FINISH_ERROR, FINISH_OK

PAGE = 5000


def engine_event_of(row: asyncpg.Record) -> Any | None:
    """The engine input a logged event stands for, or None for events the engine never saw."""
    kind, payload, command_id = row["event_type"], row["payload"] or {}, row["command_id"]
    if command_id is not None:
        if kind in FINISH_OK and (row["status"] or "").upper() not in ("FAILED", "ERROR"):
            return engine.command_done(command_id, payload.get("result"))
        if kind in FINISH_OK or kind in FINISH_ERROR:
            return engine.command_failed(command_id, row["error"] or f"{kind} without an error message")
        if kind.startswith("child."):
            return engine.child_done(command_id, payload.get("status"), payload.get("result"), payload.get("error"),
                                     payload.get("steps"))
    if kind == "execution.cancel_requested":
        return engine.cancel()
    return None


async def fold(conn: asyncpg.Connection | asyncpg.Pool, playbook: Any, execution: asyncpg.Record) -> tuple[Any, int]:
    """(replayed state, events read)."""
    rows: list[asyncpg.Record] = []
    after = None
    while True:
        page = await conn.fetch("SELECT event_id, event_type, status, command_id, payload, error FROM noetl.event "
                                "WHERE execution_id = $1 AND ($2::bigint IS NULL OR event_id > $2) "
                                "ORDER BY event_id LIMIT $3", execution["execution_id"], after, PAGE)
        rows.extend(page)
        if len(page) < PAGE:
            break
        after = page[-1]["event_id"]
    # Ids the engine minted, in minting order: every decision id is a command.issued event id.
    minted: Iterator[int] = iter(sorted(r["event_id"] for r in rows if r["event_type"] == "command.issued"))

    def mint() -> int:
        return next(minted)

    execution_id = execution["execution_id"]
    state, _ = engine.start(playbook, execution_id=execution_id, workload=execution["workload"],
                            catalog_id=execution["catalog_id"], now_ms=engine_time(execution_id), mint=mint)
    terminal_seen = False
    for row in rows:
        if terminal_seen:
            break
        event = engine_event_of(row)
        if event is not None:
            state, decisions = engine.apply(playbook, state, event, now_ms=engine_time(row["event_id"]), mint=mint)
            terminal_seen = any(isinstance(d, engine.Finish) for d in decisions)
    return state, len(rows)
