"""Cancelling an execution (and, with cascade, its children on this shard) inside a locking
transaction: the cancel route and the stuck-execution cleanup both use it."""

from __future__ import annotations

from typing import Any

from ...store import executions as execution_store
from ...store.events import NewEvent
from . import engine_port as engine
from .orchestration import TERMINAL, Orchestrator
from .txn import Txn
from noetl_common.vocabulary import EventType


async def cancel_one(orch: Orchestrator, txn: Txn, execution_id: int, reason: str, cascade: bool,
                     cancelled: list[str], meta: dict[str, Any] | None = None) -> None:
    """Appends to `cancelled` the ids it cancels; an execution already terminal is left alone."""
    ex = await orch.lock(txn, execution_id)
    if ex is None or ex.status in TERMINAL:
        return
    row = NewEvent(event_id=orch.svc.mint_owned_id(), execution_id=execution_id,
                   event_type=EventType.EXECUTION_CANCEL_REQUESTED, node_name="cancel", status="INFO",
                   catalog_id=ex.catalog_id, payload={"reason": reason},
                   meta={"cancelled_by": "api", "cascade": cascade, **(meta or {})})
    txn.uow.append(row)
    outcome = await orch.advance(txn, ex, engine.cancel(), row.event_id)
    if outcome.finished is None:  # the engine always finishes on cancel; this keeps the promise regardless
        await orch.finish(txn, ex, status="CANCELLED", error=reason, parent_event_id=row.event_id)
    cancelled.append(str(execution_id))
    if cascade:
        for child in await execution_store.children(txn.conn, execution_id):
            await cancel_one(orch, txn, child["execution_id"], reason, cascade, cancelled, meta)
