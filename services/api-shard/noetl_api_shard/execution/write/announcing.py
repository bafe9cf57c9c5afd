"""What workers see of an issued command: its context (stored on the command row, answered by a
claim) and its announcement on its pool's subject (an outbox row, published by the outbox
publisher). Both are read by NoETL's own workers as well as ours, so the keys are NoETL's."""

from __future__ import annotations

from typing import Any

from noetl_common import tracing
from noetl_common.pools import DEFAULT_POOL, command_subject
from noetl_common.wire.internal import CommandNotification
from noetl_common.vocabulary import AFTER

from ...state import ShardServices
from ...store.outbox import OutboxRow
from . import noetl_worker_form


def command_context(d: Any) -> dict[str, Any]:
    """The context of an engine `IssueCommand`. NoETL's Python worker reads `tool_config` (a
    pipeline's tasks as its task_sequence's `tool_config.tasks`), `input` and `spec`, in the form
    its tools run (`noetl_worker_form`); its Rust worker reads `args`; ours reads `tool`,
    `pipeline`, `args` and the rest, the playbook's own form."""
    config = d.tool_config or {}
    context = {"tool_config": noetl_worker_form.tool_config(d.tool_kind, config, d.pipeline, d.command_id),
               "input": noetl_worker_form.command_input(d.tool_kind, config, d.input), "args": d.input,
               "spec": config.get("spec") or {},
               "tool": {"kind": d.tool_kind, **config}, "pipeline": d.pipeline,
               "render_context": d.context, "iteration": d.iteration, "item": d.item,
               "attempt": d.attempt, "max_attempts": d.max_attempts}
    if getattr(d, "frame", None) is not None:  # a frame of the frames runtime: what the worker leases it with
        context["frame"] = d.frame
    if getattr(d, "after", None) is not None:  # issued ahead: runs only after this command has ended
        context[AFTER] = str(d.after)
    return context


def issued_event_context(context: dict[str, Any]) -> dict[str, Any]:
    """What the command.issued event logs of a command's context: NoETL's `{tool_config, args,
    render_context}`, `tool_config` as the playbook gives it (the tool, or its task list as
    `tasks`), not as restated for NoETL's worker. Workers read the whole context from the command
    (claim / GET /api/commands/{id}), never from this event; NoETL's web UI shows it as the
    command's context (with a top-level `tool`, its Run dialog took it for the playbook's output)."""
    tool = {k: v for k, v in (context.get("tool") or {}).items() if k != "kind"}
    pipeline = context.get("pipeline")
    return {"tool_config": tool if pipeline is None else {**tool, "tasks": pipeline},
            "args": context.get("args"), "render_context": context.get("render_context")}


def notification(svc: ShardServices, *, command_id: int, execution_id: int, step: str,
                 pool: str | None, redelivery: bool = False) -> OutboxRow:
    """The announcement of a command on its pool's subject (noetl_common.pools), carrying this
    shard's URL so the worker reaches the owner without a router. `redelivery`: re-announced by
    the reaper."""
    pool = pool or DEFAULT_POOL
    settings = svc.settings
    note = CommandNotification(execution_id=execution_id, event_id=command_id, command_id=str(command_id), step=step,
                               execution_pool=pool, server_url=settings.public_url or None, redelivery=redelivery)
    # The span issuing the command goes with it in the row's headers column (written by the
    # same INSERT either way), which the publisher sends as NATS headers: no extra write.
    traceparent = tracing.current_traceparent()
    return OutboxRow(id=svc.mint_owned_id(), execution_id=execution_id, event_id=command_id,
                     subject=command_subject(pool, execution_id, shard_route=settings.shard_subject_route,
                                             shard_count=settings.command_shard_count),
                     payload=note, headers={tracing.TRACEPARENT: traceparent} if traceparent else None)
