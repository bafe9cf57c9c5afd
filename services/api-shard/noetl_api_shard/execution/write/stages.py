"""The stage rows of NoETL's frames runtime, written with the engine's transaction: the engine logs
`stage.opened` when a `process: frame` loop run starts and `stage.closed` when it ends; each also
becomes a write of noetl.stage in the same statement (store.writes `ins_stage` / `upd_stage`).
Only those transactions carry the parts, so no other step writes anything more."""

from __future__ import annotations

from typing import Any

from noetl_common.vocabulary import EventType

from ...store.writes import StageClose, StageRow
from .unit_of_work import UnitOfWork

STAGE_EVENTS = frozenset({EventType.STAGE_OPENED, EventType.STAGE_CLOSED})


def record(uow: UnitOfWork, execution_id: int, d: Any, event_id: int, parent_event_id: int | None) -> None:
    """`d`: the engine's EmitEvent; `event_id`: the id its event is logged under."""
    payload = d.payload or {}
    stage_id = int(payload["stage_id"])
    if d.event_type == EventType.STAGE_OPENED:
        uow.open_stage(StageRow(stage_id=stage_id, execution_id=execution_id, step_name=d.step,
                                loop_event_id=str(payload.get("loop_run", "")),
                                frame_policy=payload.get("frame_policy") or {}, opened_event_id=event_id,
                                parent_event_id=parent_event_id))
    else:
        uow.close_stage(StageClose(execution_id=execution_id, stage_id=stage_id,
                                   status=str(payload.get("status") or "COMPLETED"), closed_event_id=event_id))
