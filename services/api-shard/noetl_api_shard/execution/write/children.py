"""Sub-playbooks started by the engine (`kind: playbook` steps). A child lives on its parent's
shard (ids minted here are owned here), so its end is logged in the parent's history and
advances the parent in the same transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from noetl_common.vocabulary import EventType

from ...store import commands as command_store
from ...store.events import NewEvent
from ...store.writes import CommandChange, CommandRow
from . import engine_port as engine
from .execution_cache import Loaded
from .txn import FollowUp, NeedsLock, Txn

if TYPE_CHECKING:  # the orchestrator calls in here; only its type is needed
    from .orchestration import Orchestrator

CHILD_EVENT = {"COMPLETED": "child.completed", "FAILED": "child.failed", "CANCELLED": "child.cancelled"}


async def start_child(orch: Orchestrator, txn: Txn, ex: Loaded, d: Any) -> None:
    """Start the child of a `kind: playbook` command, or fail the step when the sub-playbook is
    not registered."""
    txn.uow.new_command(CommandRow(
        command_id=d.command_id, execution_id=ex.execution_id, catalog_id=ex.catalog_id, step=d.step,
        tool_kind="playbook", pool=None, iteration=getattr(d, "iteration", None),
        context={"path": d.path, "version": d.version, "workload": d.workload}, status="RUNNING", started=True))
    txn.uow.append(NewEvent(event_id=d.command_id, execution_id=ex.execution_id, event_type=EventType.COMMAND_ISSUED,
                            node_name=d.step, node_type="playbook", status="RUNNING", catalog_id=ex.catalog_id,
                            command_id=d.command_id,
                            payload={"context": {"path": d.path, "workload": d.workload}}))
    child_row = await orch.svc.cluster_cache.catalog_by_path(orch.svc.cluster_pool, d.path, d.version)
    if child_row is None:
        # The parent step fails cleanly instead of waiting for a child that can never start.
        reason = f"sub-playbook {d.path!r} is not registered in the catalog"
        failed = NewEvent(event_id=orch.svc.mint_owned_id(), execution_id=ex.execution_id,
                          event_type=EventType.COMMAND_FAILED, node_name=d.step, node_type="playbook", status="FAILED",
                          catalog_id=ex.catalog_id, command_id=d.command_id, payload={"error": reason},
                          error=reason)
        txn.uow.append(failed)
        txn.uow.change_command(CommandChange(command_id=d.command_id, status="FAILED", completed=True,
                                             error=reason))
        txn.queue.append(FollowUp(ex.execution_id, engine.command_failed(d.command_id, reason), failed.event_id))
        return
    await orch.start(txn, catalog_id=child_row["catalog_id"], workload=d.workload or {},
                     parent_execution_id=ex.execution_id, parent_command_id=d.command_id,
                     execution_pool=ex.execution_pool)  # a child runs where its parent does


async def report_end(orch: Orchestrator, txn: Txn, ex: Loaded, *, status: str, result: Any, error: str | None,
                     step_results: dict[str, Any] | None) -> None:
    """A finished child's end, for its parent when the parent lives on this shard: the parent's
    command completes or fails, and the parent's engine is queued to advance on it."""
    parent_id, parent_cmd = ex.parent_execution_id, ex.parent_command_id
    if not (parent_id and parent_cmd):
        return
    if orch.svc.shard_map.current.owner(parent_id) != orch.svc.settings.shard_index:
        return
    if txn.optimistic and parent_id not in txn.loaded:
        raise NeedsLock(f"the parent {parent_id} advances too")
    txn.uow.change_command(CommandChange(command_id=parent_cmd, status="COMPLETED" if status == "COMPLETED"
                                         else "FAILED", completed=True, result=result, error=error))
    # Logged in the parent's own history so a replay of the parent sees the child's outcome.
    done = NewEvent(event_id=orch.svc.mint_owned_id(), execution_id=parent_id, event_type=CHILD_EVENT[status],
                    node_name=await _command_step(txn, parent_id, parent_cmd), node_type="playbook",
                    status=status, command_id=parent_cmd,
                    payload={"status": status, "result": result, "error": error, "steps": step_results or {},
                             "child_execution_id": str(ex.execution_id)}, error=error)
    txn.uow.append(done)
    txn.queue.append(FollowUp(parent_id, engine.child_done(parent_cmd, status, result, error, step_results),
                              done.event_id))


async def _command_step(txn: Txn, execution_id: int, command_id: int) -> str | None:
    parent = txn.loaded.get(execution_id)
    pending = parent.state.pending.get(command_id) if parent else None
    if pending is not None:
        return pending.step
    new = txn.uow.command_row(command_id)
    if new is not None:
        return new.step
    return await command_store.step_of(txn.conn, command_id)
