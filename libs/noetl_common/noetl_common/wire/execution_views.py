"""Wire shapes of the execution read side and of the write side's answers (reference §1.3.6-1.3.7):
list items, detail, events, status, variables, cancel/finalize, replay. The handlers encode these,
and /openapi.json describes them, so the two are one.

Times are ISO-8601 strings (NoETL's); ids are strings except where NoETL sends ints.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

Unset = msgspec.UnsetType
UNSET = msgspec.UNSET


class ExecutionEntry(msgspec.Struct, kw_only=True):
    """NoETL's ExecutionEntryResponse."""

    execution_id: str
    catalog_id: str
    path: str
    version: int
    status: str
    start_time: str | None
    end_time: str | None
    duration_seconds: float | None
    duration_human: str | None
    progress: int
    result: Any
    error: str | None
    parent_execution_id: str | None


class ListedExecution(ExecutionEntry, kw_only=True):
    """A list item: the entry plus the projected summary's counts (0 until projected)."""

    step_count: int
    failed_step_count: int
    event_count: int


class EventView(msgspec.Struct, kw_only=True):
    """NoETL's ExecutionEventResponse."""

    execution_id: str
    event_id: str
    event_type: str
    node_id: str | None
    node_name: str | None
    node_type: str | None
    status: str | None
    created_at: str | None
    timestamp: str | None
    context: Any
    result: Any
    error: str | None
    command_id: str | None
    worker_id: str | None
    attempt: int | None
    iteration: int | None
    catalog_id: str | None
    parent_execution_id: str | None
    parent_event_id: str | None
    duration: float | None        # milliseconds, as NoETL's engine writes it (store/events.py)


class EventPagination(msgspec.Struct, kw_only=True):
    """NoETL's page/page_size (or offset/limit) with its totals (events newest first), and the key
    of the next, older page."""

    page: int
    page_size: int
    offset: int
    total_events: int
    total_pages: int
    has_next: bool
    has_prev: bool
    next_before_event_id: str | None


class ExecutionDetail(ExecutionEntry, kw_only=True):
    events_included: bool
    events_endpoint: str
    events: list[EventView] | Unset = UNSET           # with include_events (the default)
    pagination: EventPagination | Unset = UNSET


class EventPage(msgspec.Struct, kw_only=True):
    execution_id: str
    path: str
    status: str
    events: list[EventView]
    pagination: EventPagination


class StatusProgress(msgspec.Struct, kw_only=True):
    total_steps: int
    completed_steps: int
    running_steps: int
    failed_steps: int


class ExecutionStatus(msgspec.Struct, kw_only=True):
    """GET /api/executions/{id}/status: NoETL's Python shape plus the Rust server's fields."""

    execution_id: str
    status: str
    path: str
    current_step: str | None
    completed_steps: list[str]
    failed: bool
    completed: bool
    cancelled: bool
    is_cancelled: bool
    completion_inferred: bool
    variables: dict[str, Any]
    result: Any
    error: str | None
    start_time: str | None
    end_time: str | None
    duration_seconds: float | None
    duration_human: str | None
    progress: StatusProgress
    # With ?steps=true: each step's final result, the context and how often each step was issued.
    steps: dict[str, Any] | Unset = UNSET
    context: dict[str, Any] | Unset = UNSET
    issued: dict[str, int] | Unset = UNSET


class CancellationCheck(msgspec.Struct, kw_only=True):
    execution_id: str
    status: str
    event_type: str | None
    cancelled: bool
    is_cancelled: bool
    completed: bool
    failed: bool


class CancelResponse(msgspec.Struct, kw_only=True):
    status: str                          # cancelled | already_completed
    execution_id: str
    cancelled_executions: list[str]
    message: str


class FinalizeResponse(msgspec.Struct, kw_only=True):
    status: str                          # finalized | already_completed
    execution_id: str
    message: str


class ReplayReport(msgspec.Struct, kw_only=True):
    """GET /api/replay/state: the state folded again from the log, against the stored one."""

    execution_id: str
    status: str
    event_count: int
    last_event_id: str | None
    last_event_type: str | None
    checksum: str
    stored_checksum: str
    data_checksum: str
    stored_data_checksum: str
    matches: bool
    state: dict[str, Any]


class SetVarsRequest(msgspec.Struct, kw_only=True):
    variables: Annotated[dict[str, Any], msgspec.Meta(min_length=1)]
    var_type: Literal["user_defined", "step_result", "computed", "iterator_state"] = "user_defined"
    source_step: str | None = None


class VarValue(msgspec.Struct, kw_only=True):
    value: Any
    type: str
    source_step: str | None
    created_at: str
    accessed_at: str | None
    access_count: int


class VarList(msgspec.Struct, kw_only=True):
    execution_id: int
    variables: dict[str, VarValue]
    count: int


class VarOne(VarValue, kw_only=True):
    """One variable, NoETL's flat shape: its value's fields beside the execution and its name."""

    execution_id: int
    var_name: str


class VarsSet(msgspec.Struct, kw_only=True):
    execution_id: int
    variables_set: int
    var_names: list[str]


class VarDeleted(msgspec.Struct, kw_only=True):
    execution_id: int
    var_name: str
    deleted: bool


class VarsDeleted(msgspec.Struct, kw_only=True):
    execution_id: int
    deleted_count: int
