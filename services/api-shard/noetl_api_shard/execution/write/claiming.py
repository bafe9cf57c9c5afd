"""A granted claim: the command's row taken, and the events `command.claimed` and `command.started`,
written in the claim's own transaction (a claim starts the command). Used by the claim route and by
eager dispatch."""

from __future__ import annotations

from typing import Any, Mapping

from noetl_common.vocabulary import EventType

from ...store.events import NewEvent
from ...store.writes import CommandChange
from .unit_of_work import UnitOfWork


def claim_events(mint: Any, cmd: Mapping[str, Any], worker_id: str, attempt: int,
                 meta: dict[str, Any] | None = None) -> list[NewEvent]:
    """`command.claimed` and `command.started`: a claim starts the command in the same transaction."""
    command_id = cmd["command_id"]
    common = dict(execution_id=cmd["execution_id"], node_name=cmd["step"], node_type=cmd["tool_kind"],
                  status="RUNNING", catalog_id=cmd["catalog_id"], command_id=command_id, worker_id=worker_id,
                  attempt=attempt, iteration=cmd["iteration"])
    return [NewEvent(event_id=mint(), event_type=EventType.COMMAND_CLAIMED,
                     payload={"result": {"status": "RUNNING", "context": {"command_id": command_id}}},
                     meta={"command_id": command_id, "worker_id": worker_id, "actionable": False, **(meta or {})},
                     **common),
            NewEvent(event_id=mint(), event_type=EventType.COMMAND_STARTED,
                     payload={"command_id": str(command_id), "worker_id": worker_id}, **common)]


def grant(uow: UnitOfWork, mint: Any, row: Mapping[str, Any], worker: str, attempt: int, lease_seconds: float,
          meta: dict[str, Any], *, if_issued: bool = False) -> None:
    """Claim an existing command for `worker` (its row and the claim's events). `if_issued`: an
    optimistic claim, applied only to a command still ISSUED (see Expect)."""
    uow.change_command(CommandChange(command_id=row["command_id"], status="RUNNING", worker_id=worker,
                                     attempt=attempt, lease_seconds=lease_seconds, claimed=True, started=True,
                                     if_issued=if_issued))
    uow.append(*claim_events(mint, row, worker, attempt, meta))
