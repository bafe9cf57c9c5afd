"""Write side of executions. Every change is one shard transaction: handlers run the engine and
record their writes in a UnitOfWork, which goes to Postgres as one statement at the end;
follow-ups (a child's end advancing its parent) are drained before that.

Two ways to run one (see docs/architecture.md):
- `optimistic(execution_id)`: the hot path. No BEGIN, no COMMIT, no row lock: the execution comes
  from the process's cache, and the write is a single statement that applies only if the row is
  still at the version the cache had (checked inside it). One round trip per step. When it cannot
  be used — not cached, another execution is needed, another writer got there first — it raises
  Fallback, having written nothing, and the caller runs the same work under `transaction()`.
- `transaction()`: BEGIN, rows locked FOR UPDATE before the engine runs, the write, COMMIT. Used
  by everything else (claims, cancel, finalize, the reaper) and as the fallback.
Within the process, transactions on one execution are serialised by the cache (`ExecutionCache`),
so one execution's decisions, and the event ids minted for them, are ordered.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Iterator

import asyncpg
import msgspec

from noetl_common import tracing
from noetl_common.errors import ApiError
from noetl_common.pools import resolve_pool
from noetl_common.vocabulary import EventType

from ...state import ShardServices
from ...store import catalog as catalog_store
from ...store import commands as command_store
from ...store import executions as execution_store
from ...store import writes
from ...store.events import NewEvent
from ...store.writes import CommandChange, CommandRow, ExecutionWrite
from . import children, stages
from .stages import STAGE_EVENTS
from . import engine_port as engine
from . import stored_loader
from .announcing import command_context, issued_event_context, notification
from .claim_book import ClaimBook
from .claiming import claim_events, grant
from .execution_cache import ExecutionCache, Loaded
from .group_commit import GroupCommit
from .prompt_announce import PromptAnnouncer
from .txn import Eager, Fallback, NeedsLock, Outcome, StatementCount, Txn
from .unit_of_work import UnitOfWork
from .wakeups import Wakeups

log = logging.getLogger("noetl.api_shard.orchestration")

# How many workers may take one command over after the previous holder vanished (lease expired)
# before the step fails. Tool-level retries are separate: the engine issues a new command each.
TAKEOVER_ATTEMPTS = 3
# A held-back command's row as read, for handing it over (CommandRow's fields the table has).
HELD_BACK_COLUMNS = ("command_id", "execution_id", "catalog_id", "step", "tool_kind", "pool", "iteration", "context",
                     "status", "attempt", "max_attempts")
TERMINAL = execution_store.TERMINAL
TERMINAL_EVENT = {"COMPLETED": EventType.PLAYBOOK_COMPLETED, "FAILED": EventType.PLAYBOOK_FAILED,
                  "CANCELLED": EventType.EXECUTION_CANCELLED}


class Orchestrator:
    def __init__(self, svc: ShardServices, wakeups: Wakeups, cache: ExecutionCache | None = None,
                 announcer: PromptAnnouncer | None = None, claims: ClaimBook | None = None) -> None:
        self.svc = svc
        self.wakeups = wakeups
        self.cache = cache or ExecutionCache()
        self.claims = claims or ClaimBook()
        self.announcer = announcer
        self.group = GroupCommit()
        self._playbooks: dict[int, tuple[Any, asyncpg.Record]] = {}  # catalog rows are immutable

    async def playbook(self, catalog_id: int) -> tuple[Any, asyncpg.Record]:
        cached = self._playbooks.get(catalog_id)
        if cached is None:
            row = await catalog_store.get_by_id(self.svc.cluster_pool, catalog_id)
            if row is None:
                raise ApiError(404, f"Executable catalog entry not found: catalog_id={catalog_id}", "not_found")
            cached = (engine.parse_playbook(row["payload"] if row["payload"] is not None else row["content"]), row)
            self._playbooks[catalog_id] = cached
        return cached

    # --- the transaction ----------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Txn]:
        txn: Txn | None = None
        committed = False
        try:
            async with self.svc.write_pool.acquire() as conn:
                with tracing.child_span("db.transaction", {"noetl.txn.mode": "locking"}) as span:
                    counted = StatementCount(conn, span)  # a no-op without a span
                    try:
                        async with conn.transaction():
                            txn = Txn(conn, self._unit_of_work())
                            yield txn
                            await self.drain(txn)
                            if not txn.uow.empty:
                                self._save_states(txn)
                                await writes.flush(conn, txn.uow.write_set())
                    finally:
                        counted.close(len(txn.uow.events) if txn is not None else 0)
            committed = True
            self._after_commit(txn)
        finally:
            if txn is not None:
                self._release(txn, committed)

    @contextlib.asynccontextmanager
    async def optimistic(self, execution_id: int | None, *,
                         batch_key: tuple[int, str] | None = None) -> AsyncIterator[Txn]:
        """The hot path (see the module docstring). `execution_id`: the one existing execution the
        work is about (None: it only starts new ones); `batch_key`: an Idempotency-Key that must
        not have been answered yet. Raises Fallback when the caller must redo it under a lock."""
        txn = Txn(None, self._unit_of_work(), optimistic=True)
        committed = False
        try:
            if execution_id is not None:
                ex = await self.cache.acquire(execution_id)
                txn.held.add(execution_id)
                if ex is None:
                    raise Fallback(f"execution {execution_id} is not cached")
                txn.loaded[execution_id] = ex
            yield txn
            await self.drain(txn)
            self._save_states(txn)
            ws = txn.uow.write_set()
            with self._announcing(txn.uow) as announced, \
                    tracing.child_span("db.transaction", {"noetl.txn.mode": "optimistic",
                                                          "noetl.events": len(ws.events)}) as span:
                statements = await self.group.flush(self.svc.write_pool, ws, writes.Expect(
                    executions=len(ws.executions), claims=sum(c.if_issued for c in ws.commands),
                    batch_keys=[batch_key] if batch_key else []))
                if span is not None:
                    span.set_attribute("db.statement_count", statements)
                committed = True
                self._after_commit(txn, announced)
        except (NeedsLock, writes.Conflict, writes.KnownBatch) as exc:
            raise Fallback(str(exc)) from None
        finally:
            self._release(txn, committed)

    def _unit_of_work(self) -> UnitOfWork:
        return UnitOfWork(self.svc.settings.shard_index, self.svc.mint_owned_id)

    def _save_states(self, txn: Txn) -> None:
        """One state write per execution per transaction, whatever advanced it."""
        for ex in txn.loaded.values():
            if ex.changed:
                row = txn.uow.execution(ex.execution_id)
                row.state = engine.encode_state(ex.state)
                row.state_version = ex.version + 1
                txn.uow.record_data(ex.execution_id, ex.data.take_journal())

    @contextlib.contextmanager
    def _announcing(self, uow: UnitOfWork) -> Iterator[bool]:
        """The hot path's command notifications go out while its statement commits: JetStream and
        a worker take about as long as the commit's WAL flush, so a first step no longer waits for
        both in turn. A claim that arrives first waits until the transaction has ended (ClaimBook
        `settled`): it then finds the command committed, or, when the statement failed, nothing
        (404; a worker drops the message). Yields False when the relay alone announces (no NATS).
        The gate is set on leaving, before the caller releases the executions it held; the claims
        it wakes run only once the caller is done (no await in between)."""
        if not uow.notifications:
            yield True
            return
        ids = [c.command_id for c in uow.issued_commands()]
        gate = self.claims.unsettled(ids)
        try:
            yield self.announcer is not None and self.announcer.announce(uow.notifications)
        except BaseException:
            self.claims.settle(ids, gate, committed=False)
            raise
        self.claims.settle(ids, gate, committed=True)

    def _after_commit(self, txn: Txn, announced: bool | None = None) -> None:
        """`announced`: whether the notifications were published already (optimistic path); None:
        publish them now."""
        for ex in txn.loaded.values():
            if ex.changed:
                ex.version += 1
                ex.changed = False
        uow = txn.uow
        self.claims.record(uow, txn.began)
        if uow.events:
            self.svc.metrics.events_ingested(len(uow.events))
            self.wakeups.events_committed(uow.executions_touched())
        # Commands the shard announces itself need the relay only to delete their rows.
        if announced is None:
            announced = self.announcer is not None and self.announcer.announce(uow.notifications)
        if uow.events or uow.notifications:
            self.wakeups.outbox_written(urgent=bool(uow.notifications) and not announced)

    def _release(self, txn: Txn, committed: bool) -> None:
        """Held executions go back to the cache after a commit (finished ones leave it), or after a
        failure that changed nothing in them (a fallback before any decision); otherwise they are
        forgotten, their in-memory state possibly ahead of the database."""
        for execution_id in txn.held:
            ex = txn.loaded.get(execution_id)
            intact = ex is not None and (committed or not ex.changed) and ex.status not in TERMINAL
            self.cache.release(execution_id, ex if intact else None)

    # --- loading ------------------------------------------------------------------------------
    async def load(self, txn: Txn, row: Any) -> Loaded:
        """A locked row, ready for the engine (from the cache when it has this version, else the
        database)."""
        execution_id = row["execution_id"]
        ex = txn.loaded.get(execution_id)
        if ex is not None:
            return ex
        ex, held = await self.cache.take(execution_id, row["state_version"])
        if held:
            txn.held.add(execution_id)
        if ex is None:
            state = engine.decode_state(row["state"])
            loops = [(step, loop.run) for step, loop in state.loops.items()]
            data = engine.data_from_rows(await execution_store.load_data(txn.conn, execution_id, loops), loops)
            ex = Loaded.from_row(row, state, data)
        txn.loaded[execution_id] = ex
        return ex

    async def lock(self, txn: Txn, execution_id: int) -> Loaded | None:
        if execution_id in txn.loaded:
            return txn.loaded[execution_id]
        if txn.optimistic:
            raise NeedsLock(f"execution {execution_id} is needed too")
        row = await execution_store.lock(txn.conn, execution_id)
        return None if row is None else await self.load(txn, row)

    # --- start --------------------------------------------------------------------------------
    async def start(self, txn: Txn, *, catalog_id: int, workload: dict[str, Any],
                    parent_execution_id: int | None = None, parent_command_id: int | None = None,
                    requested_by: str | None = None, execution_pool: str | None = None,
                    execution_id: int | None = None) -> tuple[int, Outcome]:
        """`execution_id`: minted by the caller when it needed the id first (keychain entries)."""
        playbook, row = await self.playbook(catalog_id)
        declared = row["payload"].get("workload") if isinstance(row["payload"], dict) else None
        merged = {**(declared if isinstance(declared, dict) else {}), **workload}
        mint = self.svc.mint_owned_id
        execution_id = execution_id or mint()
        init_event_id = mint()  # before the engine mints, so the log starts with it
        data = engine.new_data()
        with tracing.child_span("engine.start", {"noetl.execution_id": str(execution_id)}):
            state, decisions = engine.start(playbook, execution_id=execution_id, workload=merged,
                                            catalog_id=catalog_id, now_ms=engine.engine_time(execution_id), mint=mint,
                                            data=data)
        ex = Loaded(execution_id=execution_id, catalog_id=catalog_id, status="RUNNING", path=row["path"],
                    parent_execution_id=parent_execution_id, parent_command_id=parent_command_id,
                    state=state, data=data, version=0, execution_pool=execution_pool)
        ex.changed = True
        txn.loaded[execution_id] = ex
        txn.held.add(execution_id)
        self.cache.hold_new(execution_id)
        txn.uow.new_execution(ExecutionWrite(
            execution_id=execution_id, catalog_id=catalog_id, path=row["path"], version=row["version"],
            workload=merged, parent_execution_id=parent_execution_id, parent_command_id=parent_command_id,
            requested_by=requested_by, execution_pool=execution_pool))
        txn.uow.append(NewEvent(event_id=init_event_id, execution_id=execution_id,
                                event_type=EventType.PLAYBOOK_INITIALIZED, node_name=row["path"], node_type="playbook",
                                status="RUNNING", catalog_id=catalog_id, parent_execution_id=parent_execution_id,
                                payload={"context": {"workload": merged}}))
        outcome = await self.persist(txn, ex, decisions, parent_event_id=init_event_id)
        return execution_id, outcome

    # --- advance ------------------------------------------------------------------------------
    async def advance(self, txn: Txn, ex: Loaded, event: Any, cause_event_id: int,
                      eager: Eager | None = None, reporter: str | None = None) -> Outcome:
        """Run the engine on one event for a locked execution and record its decisions.
        `reporter`: the worker whose outcome the event is."""
        if ex.status in TERMINAL:
            return Outcome()
        playbook, _ = await self.playbook(ex.catalog_id)
        ex.changed = True  # before apply, which updates the state in place
        with tracing.child_span("engine.apply", {"noetl.execution_id": str(ex.execution_id),
                                                 "noetl.engine.event": type(event).__name__}) as span:
            state = ex.state
            ex.state, decisions = await stored_loader.run_engine(
                ex.data.holds_stored, txn.conn or self.svc.write_pool,
                lambda resolve: engine.apply(playbook, state, event, now_ms=engine.engine_time(cause_event_id),
                                             mint=self.svc.mint_owned_id, data=ex.data, resolve=resolve))
            if span is not None:
                span.set_attribute("noetl.engine.decisions", len(decisions))
        return await self.persist(txn, ex, decisions, parent_event_id=cause_event_id, eager=eager, reporter=reporter)

    async def drain(self, txn: Txn) -> None:
        """Apply queued follow-ups in order (each may queue more) within the transaction."""
        while txn.queue:
            item = txn.queue.pop(0)
            ex = await self.lock(txn, item.execution_id)
            if ex is not None:
                await self.advance(txn, ex, item.event, item.cause_event_id)

    async def fail_command(self, txn: Txn, command: Any, reason: str) -> None:
        """A command the fleet gave up on (attempts exhausted): record it and let the engine decide."""
        txn.uow.change_command(CommandChange(command_id=command["command_id"], status="FAILED", completed=True,
                                             error=reason))
        row = NewEvent(event_id=self.svc.mint_owned_id(), execution_id=command["execution_id"],
                       event_type=EventType.COMMAND_FAILED, node_name=command["step"], node_type=command["tool_kind"],
                       status="FAILED", catalog_id=command["catalog_id"], command_id=command["command_id"],
                       attempt=command["attempt"], iteration=command["iteration"], payload={"error": reason},
                       error=reason)
        txn.uow.append(row)
        ex = await self.lock(txn, command["execution_id"])
        if ex is not None:
            await self.advance(txn, ex, engine.command_failed(command["command_id"], reason), row.event_id)

    # --- decisions ----------------------------------------------------------------------------
    async def persist(self, txn: Txn, ex: Loaded, decisions: list[Any], parent_event_id: int,
                      eager: Eager | None = None, reporter: str | None = None) -> Outcome:
        outcome = Outcome()
        finish = None
        for d in decisions:
            if isinstance(d, engine.IssueCommand):
                outcome.commands += 1
                self._issue(txn, ex, d, parent_event_id, eager)
            elif isinstance(d, engine.EmitEvent):
                event_id = self.svc.mint_owned_id()
                txn.uow.append(NewEvent(event_id=event_id, execution_id=ex.execution_id,
                                        event_type=d.event_type, node_name=d.step, status="INFO",
                                        catalog_id=ex.catalog_id, parent_event_id=parent_event_id,
                                        payload=d.payload or {}))
                if d.event_type in STAGE_EVENTS:
                    stages.record(txn.uow, ex.execution_id, d, event_id, parent_event_id)
            elif isinstance(d, engine.Release):
                await self._released(txn, ex, d, reporter, eager)
            elif isinstance(d, engine.StartChild):
                await children.start_child(self, txn, ex, d)
            elif isinstance(d, engine.Finish):
                finish = d
        if finish is not None:
            outcome.finished = finish.status
            await self.finish(txn, ex, status=finish.status, result=finish.result, error=finish.error,
                              parent_event_id=parent_event_id, step_results=finish.step_results)
        return outcome

    def _issue(self, txn: Txn, ex: Loaded, d: Any, parent_event_id: int, eager: Eager | None) -> None:
        pool = getattr(d, "pool", None) or resolve_pool(ex.execution_pool, ex.path)
        context = command_context(d)
        cmd = CommandRow(command_id=d.command_id, execution_id=ex.execution_id, catalog_id=ex.catalog_id,
                         step=d.step, tool_kind=d.tool_kind, pool=pool, iteration=d.iteration, context=context,
                         max_attempts=TAKEOVER_ATTEMPTS)
        txn.uow.append(NewEvent(event_id=d.command_id, execution_id=ex.execution_id, event_type=EventType.COMMAND_ISSUED,
                                node_name=d.step, node_type=d.tool_kind, status="PENDING", catalog_id=ex.catalog_id,
                                parent_event_id=parent_event_id, command_id=d.command_id, attempt=d.attempt,
                                iteration=d.iteration, payload={"context": issued_event_context(context)}))
        after = getattr(d, "after", None)
        if eager is not None and eager.pool == pool and (
                self._chained(after, eager) if after is not None else len(eager.claimed) < eager.slots):
            cmd.status, cmd.worker_id, cmd.lease_seconds, cmd.started = ("RUNNING", eager.worker_id,
                                                                         eager.lease_seconds, True)
            txn.uow.append(*claim_events(self.svc.mint_owned_id, msgspec.structs.asdict(cmd), eager.worker_id, 1,
                                         {"eager": True}))
            eager.claimed.append(cmd)
            self.svc.metrics.command_picked_up(cmd.command_id, pool, "eager")
        elif after is None:
            txn.uow.notify(notification(self.svc, command_id=cmd.command_id, execution_id=cmd.execution_id,
                                        step=cmd.step, pool=pool))
        # else held: announced by the reaper once the command before it has ended (upkeep.reaper)
        txn.uow.new_command(cmd)

    async def _released(self, txn: Txn, ex: Loaded, d: Any, reporter: str | None, eager: Eager | None) -> None:
        """The iteration before command `d.command_id` has ended. The worker that ran it usually
        holds this one and has started it: its lease now counts from here once half of it has gone
        (it may have waited behind slow iterations). Held by another worker whose lease runs:
        nothing. Held back (nobody has it): handed to the reporting worker when it takes commands
        eagerly, so its chain forms again (after a takeover, or a restart of this process),
        otherwise announced; so is one whose holder is gone."""
        lease = self.svc.settings.claim_lease_seconds
        claim = self.claims.granted(d.command_id)
        held_back = self.claims.issued(d.command_id) if claim is None else None
        holder: str | None = None
        live = fresh = False
        if claim is not None:
            left = claim.until - self.claims.clock()
            holder, live, fresh = claim.worker_id, left > 0, left > lease / 2
        elif held_back is None:
            if txn.optimistic:
                raise Fallback("the holder of a released command is not known here")
            row = await command_store.get(txn.conn, d.command_id)
            if row is None or row["status"] in command_store.TERMINAL:
                return
            if row["status"] == "ISSUED":
                held_back = CommandRow(**{f: row[f] for f in HELD_BACK_COLUMNS})
            else:
                holder = row["worker_id"]
                live = row["lease_expires_at"] is not None and row["lease_expires_at"] > datetime.now(timezone.utc)
        if holder is not None and holder == reporter:
            if not fresh:
                txn.uow.change_command(CommandChange(command_id=d.command_id, lease_seconds=lease))
        elif held_back is not None and eager is not None and eager.worker_id == reporter and eager.pool == held_back.pool:
            cmd = msgspec.structs.replace(held_back, status="RUNNING", worker_id=eager.worker_id,
                                          lease_seconds=eager.lease_seconds, started=True)
            grant(txn.uow, self.svc.mint_owned_id, msgspec.structs.asdict(cmd), eager.worker_id, cmd.attempt,
                  eager.lease_seconds, {"eager": True}, if_issued=txn.optimistic)
            eager.claimed.append(cmd)
            self.svc.metrics.command_picked_up(cmd.command_id, eager.pool, "eager")
        elif holder is None or not live:
            txn.uow.notify(notification(self.svc, command_id=d.command_id, execution_id=ex.execution_id, step=d.step,
                                        pool=resolve_pool(ex.execution_pool, ex.path)))

    def _chained(self, after: int, eager: Eager) -> bool:
        """An iteration issued ahead goes to the eager worker only if that worker holds the one
        before it (handed over now, or earlier while its lease surely runs): it runs in that slot,
        after it, so it takes no slot of its own."""
        if any(c.command_id == after for c in eager.claimed):
            return True
        holder = self.claims.holder(after)
        return holder is not None and holder.worker_id == eager.worker_id

    async def finish(self, txn: Txn, ex: Loaded, *, status: str, result: Any = None, error: str | None = None,
                     parent_event_id: int | None = None, step_results: dict[str, Any] | None = None) -> None:
        """Terminal status, exactly once; a child's end is logged in its parent and advances it.
        `parent_event_id`: the event that caused the end (None for an operator's finalize)."""
        if ex.status in TERMINAL:
            return
        ex.status = status
        ex.changed = True  # a status change bumps the version too: an optimistic writer must not miss it
        self.svc.metrics.execution_finished(status)
        row = txn.uow.execution(ex.execution_id)
        row.status, row.result, row.error = status, result, error
        txn.uow.cancel_open_commands(ex.execution_id)
        txn.uow.append(NewEvent(
            event_id=self.svc.mint_owned_id(), execution_id=ex.execution_id, event_type=TERMINAL_EVENT[status],
            node_name=ex.path, node_type="playbook", status=status, catalog_id=ex.catalog_id,
            parent_event_id=parent_event_id, parent_execution_id=ex.parent_execution_id,
            payload={"result": result, "error": error}, error=error))
        await children.report_end(self, txn, ex, status=status, result=result, error=error,
                                  step_results=step_results)
