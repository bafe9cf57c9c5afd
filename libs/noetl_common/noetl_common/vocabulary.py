"""The words the fleet logs and answers with: event types, execution/command statuses, and the
terminal statuses, defined once. StrEnum members are their strings (they compare, hash, encode and
bind as SQL text like the literal), so wire shapes and stored rows are unchanged."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


# An execution or command in one of these never changes again.
TERMINAL_STATUSES: tuple[Status, ...] = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)

# Set (true) in a finishing event's payload by a worker that takes a sequential loop's next
# iteration ahead, and in a command's context, `after`: the command it may start only after.
PIPELINED = "pipelined"
AFTER = "after"


class EventType(StrEnum):
    # the shard, starting and ending an execution
    PLAYBOOK_INITIALIZED = "playbook.initialized"
    PLAYBOOK_COMPLETED = "playbook.completed"
    PLAYBOOK_FAILED = "playbook.failed"
    EXECUTION_CANCEL_REQUESTED = "execution.cancel_requested"
    EXECUTION_CANCELLED = "execution.cancelled"
    BATCH_ACCEPTED = "batch.accepted"
    # the engine, as it walks the workflow
    STEP_ENTER = "step.enter"
    STEP_SKIPPED = "step.skipped"
    STEP_EXIT = "step.exit"
    STEP_FAILED = "step.failed"
    LOOP_DONE = "loop.done"
    # a command's life: issued by the shard, claimed and run by a worker
    COMMAND_ISSUED = "command.issued"
    COMMAND_CLAIMED = "command.claimed"
    COMMAND_STARTED = "command.started"
    COMMAND_HEARTBEAT = "command.heartbeat"
    COMMAND_COMPLETED = "command.completed"
    COMMAND_FAILED = "command.failed"
    CALL_STARTED = "call.started"
    CALL_DONE = "call.done"
    CALL_ERROR = "call.error"
    # NoETL's frames runtime (a cursor loop with spec.frame.process: frame): the engine opens and
    # closes the loop's stage; the frames routes log each frame's life (noetl_api_shard frames_api)
    STAGE_OPENED = "stage.opened"
    STAGE_CLOSED = "stage.closed"
    FRAME_DISPATCHED = "frame.dispatched"
    FRAME_STARTED = "frame.started"
    FRAME_HEARTBEAT = "frame.heartbeat"
    FRAME_COMMITTED = "frame.committed"
    FRAME_FAILED = "frame.failed"
    FRAME_ABANDONED = "frame.abandoned"
