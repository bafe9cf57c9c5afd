"""What the engine decides; the caller persists these (commands, events, terminal status)."""

from __future__ import annotations

from typing import Any

import msgspec


class IssueCommand(msgspec.Struct, tag=True, kw_only=True):
    command_id: int
    step: str
    tool_kind: str                          # "pipeline" for a task list
    tool_config: dict[str, Any]             # rendered (pipelines: tasks unrendered, see `context`)
    input: dict[str, Any]                   # rendered inputs bound as the tool's variables
    pipeline: list[dict[str, Any]] | None = None
    context: dict[str, Any] | None = None   # render context of a pipeline's tasks, or a python step's `context`
    iteration: int | None = None
    item: Any = None
    attempt: int = 1
    max_attempts: int = 1
    # A frame of a loop on the frames runtime: {stage_id, frame_index, worker_slot_id, lease_seconds,
    # heartbeat_seconds, policy}, what the worker claims, heartbeats and commits it with.
    frame: dict[str, Any] | None = None
    # A sequential loop's iteration issued ahead (EngineEvent.pipelined): it may start only once the
    # command `after`, the iteration before it, has ended.
    after: int | None = None


class Release(msgspec.Struct, tag=True, kw_only=True):
    """The command before an iteration issued ahead has ended: a worker may start it now. Its
    holder is usually running it already; otherwise it is announced."""
    command_id: int
    step: str


class StartChild(msgspec.Struct, tag=True, kw_only=True):
    command_id: int
    step: str
    path: str
    version: int | None
    workload: dict[str, Any]
    iteration: int | None = None


class EmitEvent(msgspec.Struct, tag=True, kw_only=True):
    event_type: str                          # step.enter, step.exit, step.skipped, loop.done, step.failed
    step: str
    payload: dict[str, Any] = {}


class Finish(msgspec.Struct, tag=True, kw_only=True):
    status: str                              # COMPLETED | FAILED | CANCELLED
    result: Any = None
    error: str | None = None
    step_results: dict[str, Any] = {}


Decision = IssueCommand | Release | StartChild | EmitEvent | Finish
