"""The events of a granted claim: `command.claimed` and `command.started`, written in the claim's
own transaction (a claim starts the command). Used by the claim route and by eager dispatch."""

from __future__ import annotations

from typing import Any, Mapping

from noetl_common.vocabulary import EventType

from ...store.events import NewEvent


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
