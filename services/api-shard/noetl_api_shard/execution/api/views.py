"""Execution rows and events as their wire Structs, in NoETL's response shapes (reference §1.3.6-1.3.7)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import asyncpg

from noetl_common.vocabulary import TERMINAL_STATUSES
from noetl_common.wire.execution_views import EventView, ExecutionEntry, ExecutionStatus, ListedExecution, StatusProgress


def iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts else None


def human_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def duration_fields(row: asyncpg.Record) -> dict[str, Any]:
    """As NoETL: a running execution's duration is its time so far (its web UI shows it)."""
    start = row["started_at"] or row["created_at"]
    if not start:
        return {"duration_seconds": None, "duration_human": None}
    seconds = max(0.0, ((row["ended_at"] or datetime.now(timezone.utc)) - start).total_seconds())
    return {"duration_seconds": round(seconds, 3), "duration_human": human_duration(seconds)}


def entry_fields(row: asyncpg.Record) -> dict[str, Any]:
    """The ExecutionEntry fields of a row (shared by the entry, the list item and the detail)."""
    return dict(
        execution_id=str(row["execution_id"]),
        catalog_id=str(row["catalog_id"]),
        path=row["path"],
        version=row["version"],
        status=row["status"],
        start_time=iso(row["started_at"] or row["created_at"]),
        end_time=iso(row["ended_at"]),
        **duration_fields(row),
        progress=100 if row["status"] in TERMINAL_STATUSES else 0,
        result=row["result"],
        error=row["error"],
        parent_execution_id=str(row["parent_execution_id"]) if row["parent_execution_id"] else None,
    )


def execution_entry(row: asyncpg.Record) -> ExecutionEntry:
    return ExecutionEntry(**entry_fields(row))


def listed_entry(row: asyncpg.Record) -> ListedExecution:
    """A list item: the entry plus the projected summary's counts (0 until projected)."""
    return ListedExecution(**entry_fields(row), step_count=row["step_count"] or 0,
                           failed_step_count=row["failed_step_count"] or 0, event_count=row["event_count"] or 0)


def event_view(row: asyncpg.Record) -> EventView:
    payload = row["payload"] or {}
    return EventView(
        execution_id=str(row["execution_id"]),
        event_id=str(row["event_id"]),
        event_type=row["event_type"],
        node_id=row["node_name"],
        node_name=row["node_name"],
        node_type=row["node_type"],
        status=row["status"],
        created_at=iso(row["created_at"]),
        timestamp=iso(row["created_at"]),
        context=payload.get("context"),
        result=payload.get("result"),
        error=row["error"],
        command_id=str(row["command_id"]) if row["command_id"] else None,
        worker_id=row["worker_id"],
        attempt=row["attempt"],
        iteration=row["iteration"],
        catalog_id=str(row["catalog_id"]) if row["catalog_id"] else None,
        parent_execution_id=str(row["parent_execution_id"]) if row["parent_execution_id"] else None,
        parent_event_id=str(row["parent_event_id"]) if row["parent_event_id"] else None,
        duration=row["duration"],
    )


def status_view(row: asyncpg.Record, commands: list[asyncpg.Record], variables: dict[str, Any]) -> ExecutionStatus:
    """GET /api/executions/{id}/status: NoETL's Python shape plus the Rust server's fields."""
    status = row["status"]
    completed_steps: list[str] = []
    seen: set[str] = set()
    running = failed = 0
    for cmd in commands:
        if cmd["status"] == "COMPLETED" and cmd["step"] not in seen:
            seen.add(cmd["step"])
            completed_steps.append(cmd["step"])
        elif cmd["status"] in ("CLAIMED", "RUNNING", "ISSUED"):
            running += 1
        elif cmd["status"] == "FAILED":
            failed += 1
    return ExecutionStatus(
        execution_id=str(row["execution_id"]),
        status=status,
        path=row["path"],
        current_step=row["last_step"],
        completed_steps=completed_steps,
        failed=status == "FAILED",
        completed=status in TERMINAL_STATUSES,
        cancelled=status == "CANCELLED",
        is_cancelled=status == "CANCELLED",
        completion_inferred=False,
        variables=variables,
        result=row["result"],
        error=row["error"],
        start_time=iso(row["started_at"] or row["created_at"]),
        end_time=iso(row["ended_at"]),
        **duration_fields(row),
        progress=StatusProgress(total_steps=len({c["step"] for c in commands}), completed_steps=len(completed_steps),
                                running_steps=running, failed_steps=failed),
    )
