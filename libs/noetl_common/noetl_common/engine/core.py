"""apply(state, event) -> (state, decisions). Deterministic: no I/O, no clock (now_ms is passed in),
no randomness (ids come from `mint`). Each event touches only the steps it finishes or starts, so the
work per event does not grow with the length of the history.

Two objects carry an execution: `State` (control data, small, re-encoded per event) and
`ExecutionData` (step results, loop items and iteration results; the caller persists its journaled
writes as rows and keeps it cached). Both are updated in place.

Routing: when a step finishes, every outgoing arc sends its target a token, live (taken) or dead
(not taken). A step with one upstream runs on a live token; a fan-in step (several upstreams,
loop back-edges excluded) waits for a token from each and runs once if any is live. A step that
receives only dead tokens is skipped and passes dead tokens on, so joins downstream of an untaken
branch are never blocked.
"""

from __future__ import annotations

import re
from typing import Any, Callable


from ..dsl.model import Loop, Playbook, Step
from ..dsl.lazy import StoredView, encode_hook
from ..dsl.scopes import strip_scope, with_data
from ..dsl.templates import Renderer, TemplateError
from ..keychain_refs import ROOT as KEYCHAIN, KeychainRef, token_ref
from ..vocabulary import EventType
from .data import ExecutionData
from .decisions import Decision, EmitEvent, Finish, IssueCommand, Release, StartChild
from .events import EngineEvent
from .state import LoopState, Pending, State
from .stored import Resolve, compact, full_view, is_stub
from .values import as_items, child_result, jsonable, pipeline_envelope, pipeline_result, selected


def _loop(step: Step) -> Loop:
    """The loop of a step the engine is running as a loop (the parser guarantees it has one)."""
    assert step.loop is not None, f"step {step.name} has no loop"
    return step.loop

Mint = Callable[[], int]

# Iterations of a sequential loop issued ahead to a worker that pipelines: it runs them back to
# back and reports what has ended in one batch while the batch before is written, so a step waits
# for no round trip. A cancel is seen at the next answer: the worker drops what it has not started.
AHEAD = 8


class _Run:
    """One apply call: the playbook, the state and data (updated in place), and the decisions being
    collected."""

    def __init__(self, playbook: Playbook, state: State, data: ExecutionData, mint: Mint, now_ms: int,
                 resolve: Resolve | None = None) -> None:
        self.pb = playbook
        self.st = state
        self.data = data
        self.mint = mint
        self.now_ms = now_ms
        self.out: list[Decision] = []
        self.r = Renderer()
        self.resolve = resolve
        # Stored values loaded (or arrived whole) during this call, by reference uri.
        self.loaded: dict[str, Any] = {}

    def load(self, reference: dict[str, Any]) -> Any:
        """A stored value for a template that reads past its stub: the whole one when it arrived in
        this call, else through the caller's `resolve` (None: no store to read, the field is undefined)."""
        uri = str(reference.get("ref"))
        if uri not in self.loaded:
            value = self.resolve(reference) if self.resolve is not None else None
            self.loaded[uri] = full_view(value) if value is not None else None
        return self.loaded[uri]

    def keep(self, result: Any, whole: Any) -> Any:
        """What the execution's data holds of a result: a stored one as its stub (engine.stored),
        its whole value (before any output_select, as a later load gives it) remembered for the
        rest of this call."""
        if not is_stub(result):
            return result
        self.loaded[str(result["_ref"].get("ref"))] = whole
        return compact(result)

    def view(self, result: Any) -> Any:
        if is_stub(result):
            return StoredView(result, lambda: self.load(result["_ref"]))
        return with_data(result)

    # --- context ------------------------------------------------------------------------------
    def context(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        st = self.st
        flat = {**st.workload, **st.vars}
        ctx: dict[str, Any] = dict(flat)
        results = self.data.results
        for name, result in results.items():
            ctx[name] = self.view(result)
        ctx.update(workload=st.workload, ctx=flat, execution_id=str(st.execution_id),
                   catalog_id=str(st.catalog_id), path=self.pb.path)
        # Older spellings playbooks still use (dsl_reference §13), unless a variable takes the name.
        ctx.setdefault("outputs", {name: ctx[name] for name in results})
        ctx.setdefault("job", {"execution_id": str(st.execution_id), "uuid": str(st.execution_id)})
        # Keychain values never pass through the engine: references render back to themselves and
        # the worker fills them in (noetl_common.keychain_refs).
        ctx.setdefault(KEYCHAIN, KeychainRef())
        ctx.setdefault("token", token_ref)
        if extra:
            ctx.update(extra)
        return ctx

    def loop_scope(self, step: Step, index: int, item: Any, total: int | None) -> dict[str, Any]:
        it = _loop(step).iterator
        scope = {it: item, "_index": index, "_total": total,
                 "iter": {it: item, "_index": index, "_total": total, "_first": index == 0,
                          "_last": total is not None and index == total - 1}}
        if _loop(step).frames is not None:  # a frame's item is its rows; NoETL also names them <iterator>_rows
            scope["iter"].update({f"{it}_rows": item, "_frame_index": index})
        return scope

    # --- activation ---------------------------------------------------------------------------
    def activate(self, name: str) -> None:
        step = self.pb.steps[name]
        st = self.st
        st.step_status[name] = "running"
        st.last_step = name
        try:
            if step.when is not None and not self.r.truthy(step.when, self.context()):
                # A guarded-out step counts as done: control passes on through its arcs (only an
                # untaken branch propagates dead tokens).
                st.step_status[name] = "skipped"
                self.out.append(EmitEvent(event_type=EventType.STEP_SKIPPED, step=name, payload={"reason": "when"}))
                self.route(step, self.choose(step, self.context({"output": None})), self.context())
                return
            self.out.append(EmitEvent(event_type=EventType.STEP_ENTER, step=name))
            if step.loop is None:
                self.issue(step, None, None, None, attempt=1)
                return
            if step.loop.mode == "cursor":
                self.start_loop(step, [])
                self.claim(step)
                return
            items = as_items(self.r.render(step.loop.collection, self.context()))
            if items is None:
                raise TemplateError(str(step.loop.collection), "loop.in did not render to a collection")
            self.start_loop(step, items)
            if not items:
                self.finish_loop(step)
                return
            self.fill_loop(step)
        except TemplateError as exc:
            self.fail_step(name, f"step '{name}': {exc}")

    def start_loop(self, step: Step, items: list[Any]) -> None:
        if step.name in self.st.loops:  # a run left behind (a render error mid-fill) is replaced, as before
            self.end_loop(step, "CANCELLED")
        self.st.loop_runs += 1
        self.st.loops[step.name] = LoopState(run=self.st.loop_runs, total=len(items), cap=self.loop_cap(step))
        self.data.start_loop(step.name, self.st.loop_runs, items)

    def loop_cap(self, step: Step) -> int:
        """A templated `max_in_flight`, rendered once per loop run (kept in LoopState, so every
        later fill uses the same cap); 0 = the step's fixed cap."""
        expr = _loop(step).max_in_flight_expr
        if expr is None:
            return 0
        value = self.r.render(expr, self.context())
        try:
            cap = int(value)
        except (TypeError, ValueError):
            cap = -1
        if isinstance(value, bool) or cap < 0:
            raise TemplateError(expr, f"loop.spec.max_in_flight rendered to {value!r}, not a non-negative integer")
        return cap

    def issue(self, step: Step, index: int | None, item: Any, total: int | None, *, attempt: int,
              after: int | None = None) -> int:
        scope = self.context(self.loop_scope(step, index, item, total) if index is not None else None)
        command_id = self.mint()
        if step.kind == "playbook":
            args = {**step.input, **(step.tool.get("payload") or {})}
            workload = self.r.render(args, scope)
            path = self.r.render(step.tool.get("path"), scope)
            self.st.pending[command_id] = Pending(step=step.name, iteration=index, attempt=attempt)
            self.out.append(StartChild(command_id=command_id, step=step.name, path=str(path),
                                       version=step.tool.get("version"), workload=workload, iteration=index))
            return command_id
        inputs = self.r.render(step.input, scope)
        if index is not None:  # loop tools receive the item even when `input:` doesn't name it
            inputs = {_loop(step).iterator: item, "_index": index, "_total": total, **inputs}
        if step.kind == "pipeline":
            # The worker renders pipeline tasks and adds the keychain to this scope itself.
            context = _shipped_context({**scope, **inputs})
            config, pipeline = dict(step.tool), step.tasks  # a pipeline's tool config: its step's result tier
        else:
            config, pipeline, context = self.r.render(step.tool, {**scope, **inputs}), None, None
            if step.kind == "python" and _reads_context(step.tool.get("code")):
                # NoETL's python tool sees the execution's context as `context`; sent only to
                # code that names it, so other commands stay small.
                context = _shipped_context(scope)
        frame = None
        if index is not None and _loop(step).frames is not None:
            policy = self.frame_policy(step)
            frame = {"stage_id": str(self.st.loops[step.name].stage), "frame_index": index,
                     # the command running the frame: its takeover finds the frame again, a retry
                     # (a new command) makes a new one
                     "worker_slot_id": str(command_id), "lease_seconds": policy["lease_seconds"],
                     "heartbeat_seconds": policy["heartbeat_seconds"], "policy": policy}
        self.st.pending[command_id] = Pending(step=step.name, iteration=index, attempt=attempt,
                                              max_attempts=step.retry)
        self.out.append(IssueCommand(command_id=command_id, step=step.name, tool_kind=step.kind, tool_config=config,
                                     input=inputs, pipeline=pipeline, context=context, iteration=index, item=item,
                                     attempt=attempt, max_attempts=step.retry, frame=frame, after=after))
        return command_id

    def frame_policy(self, step: Step) -> dict[str, Any]:
        """`spec.frame` of a loop on the frames runtime, rendered, with the lease (whole seconds,
        5 to 3600, the frames routes' bounds) and heartbeat interval (seconds) checked."""
        raw = _loop(step).frames or {}
        policy = self.r.render(raw, self.context())
        policy = dict(policy) if isinstance(policy, dict) else {}
        values = {"lease_seconds": policy.get("lease_seconds", 120), "heartbeat_seconds": policy.get("heartbeat_seconds", 30)}
        for field, value in values.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = -1.0
            if isinstance(value, bool) or number <= 0 or (field == "lease_seconds" and not 5 <= number <= 3600):
                wanted = "a number of seconds from 5 to 3600" if field == "lease_seconds" else "a positive number"
                raise TemplateError(str(raw.get(field)), f"loop.spec.frame.{field} rendered to {value!r}, not {wanted}")
            policy[field] = int(number) if field == "lease_seconds" else number
        return policy

    def claim(self, step: Step) -> None:
        """Cursor mode: lease the next frame of rows with the claim tool (the rows become items)."""
        ls = self.st.loops[step.name]
        cursor = _loop(step).cursor or {}
        scope = self.context({"__frame_max_rows": _loop(step).frame_rows, "__frame_index": ls.frames})
        config = self.r.render({k: v for k, v in cursor.items() if k not in ("kind", "claim", "options")}, scope)
        config["command"] = self.r.render(cursor["claim"], scope)
        opens = _loop(step).frames is not None and not ls.stage
        policy = self.frame_policy(step) if opens else None  # before minting: a bad policy mints nothing
        command_id = self.mint()
        if opens:
            # The loop run's stage (NoETL's frames runtime) is named by its first claim's id: minted
            # by the shard like every id, so the frames routes route by it, and a replay mints it again.
            ls.stage = command_id
            self.out.append(EmitEvent(event_type=EventType.STAGE_OPENED, step=step.name, payload={
                "stage_id": str(command_id), "kind": "loop", "loop_run": ls.run, "frame_policy": policy}))
        self.st.pending[command_id] = Pending(step=step.name, claim=True)
        self.out.append(IssueCommand(command_id=command_id, step=step.name, tool_kind=cursor["kind"],
                                     tool_config=config, input={}))

    def on_claimed(self, step: Step, ok: bool, result: Any, error: str) -> None:
        ls = self.st.loops.get(step.name)
        if ls is None:
            return
        if not ok:
            self.end_loop(step, "FAILED")
            self.fail_step(step.name, f"step '{step.name}': cursor claim failed: {error}")
            return
        rows = result.get("rows") if isinstance(result, dict) else result
        if not isinstance(rows, list):
            self.end_loop(step, "FAILED")
            self.fail_step(step.name, f"step '{step.name}': cursor claim must return rows, got {type(rows).__name__}")
            return
        if not rows:  # drained
            self.finish_loop(step)
            return
        # On the frames runtime a frame is one iteration over all its rows (process: frame).
        items = [rows] if _loop(step).frames is not None else rows
        ls.frames += 1
        ls.total += len(items)
        self.data.extend_loop(step.name, ls.run, items)
        self.fill_loop(step)

    def fill_loop(self, step: Step, *, ahead: bool = False) -> None:
        """Issue iterations up to the loop's cap. A sequential loop runs one at a time; `ahead` (the
        outcome came from a worker that pipelines) lets it have AHEAD more issued, each `after` the
        one before it, which that worker runs one after another while it reports the earlier ones."""
        ls = self.st.loops[step.name]
        total = ls.total
        sequential = _loop(step).mode == "sequential"
        if sequential:
            cap = 1 + AHEAD if ahead and self.may_issue_ahead(step, ls) else 1
        else:
            cap = ls.cap or _loop(step).max_in_flight or total
        previous = None
        if sequential and 0 < ls.in_flight < cap and ls.next_index < total:
            previous = self.pending_iteration(step.name, ls.next_index - 1)
        while ls.next_index < total and ls.in_flight < cap:
            index = ls.next_index
            ls.next_index += 1
            ls.in_flight += 1
            issued = self.issue(step, index, self.data.item(step.name, ls.run, index), total, attempt=1,
                                after=previous)
            previous = issued if sequential else None

    def may_issue_ahead(self, step: Step, ls: LoopState) -> bool:
        """An iteration rendered one outcome early renders the same only while nothing else can
        change its scope: no other command pending (their results and a pipeline's ctx updates feed
        the context), not a pipeline or sub-playbook step, and no tool retry (a retried iteration
        must run before the next one)."""
        return step.kind not in ("pipeline", "playbook") and step.retry <= 1 and len(self.st.pending) == ls.in_flight

    def pending_iteration(self, step: str, index: int) -> int | None:
        """The command in flight for iteration `index` of `step` (a sequential loop has 1 + AHEAD at most)."""
        return next((command_id for command_id, p in self.st.pending.items()
                     if p.step == step and p.iteration == index), None)

    def end_loop(self, step: Step, status: str = "COMPLETED") -> None:
        """Data holds exactly the loops the State names, so a reload from rows equals it. A run on
        the frames runtime closes its stage with `status`."""
        ls = self.st.loops.pop(step.name)
        self.data.end_loop(step.name, ls.run)
        if ls.stage:
            self.out.append(EmitEvent(event_type=EventType.STAGE_CLOSED, step=step.name, payload={
                "stage_id": str(ls.stage), "status": status, "frame_count": ls.frames}))

    def finish_loop(self, step: Step) -> None:
        ls = self.st.loops[step.name]
        results = self.data.loop_results(step.name, ls.run, ls.total)
        self.end_loop(step, "FAILED" if ls.failed else "COMPLETED")
        aggregate = {"results": results,
                     "stats": {"total": ls.total, "success": ls.total - ls.failed, "failed": ls.failed}}
        self.out.append(EmitEvent(event_type=EventType.LOOP_DONE, step=step.name,
                                  payload={"stats": aggregate["stats"]}))
        if ls.failed:
            self.data.set_result(step.name, aggregate)
            first = next(i for i, r in enumerate(results) if isinstance(r, dict) and r.get("status") == "error")
            self.fail_step(step.name, f"step '{step.name}': {ls.failed} of {ls.total} iteration(s) failed; "
                                      f"iteration {first}: {results[first].get('error')}")
        else:
            self.complete(step.name, aggregate, event_name=EventType.LOOP_DONE)

    # --- completion and routing ---------------------------------------------------------------
    def complete(self, name: str, result: Any, kept: Any = None, *, event_name: str = EventType.CALL_DONE) -> None:
        """`kept`: what the data holds of `result` (its stub, when stored; default the result).
        `event_name` is what arcs see as `event.name`: `call.done` for a step whose call finished
        (NoETL's server routes on that event), `loop.done` for a loop's last iteration."""
        step = self.pb.steps[name]
        st = self.st
        self.data.set_result(name, result if kept is None else kept)
        st.step_status[name] = "done"
        self.out.append(EmitEvent(event_type=EventType.STEP_EXIT, step=name, payload={"status": "COMPLETED"}))
        try:
            scope = self.context({"output": with_data(result), "event": {"name": event_name}})
            for key, value in step.set.items():
                st.vars[strip_scope(key)] = self.r.render(value, scope)
            scope = self.context({"output": with_data(result), "event": {"name": event_name}})
            taken = self.choose(step, scope)
        except TemplateError as exc:
            self.fail_step(name, f"step '{name}': {exc}")
            return
        self.route(step, taken, scope)

    def choose(self, step: Step, scope: dict[str, Any], *, explicit_only: bool = False) -> list[int]:
        taken = []
        for i, arc in enumerate(step.arcs):
            if explicit_only and arc.when is None:
                continue
            if self.r.truthy(arc.when, scope):
                taken.append(i)
                if not step.inclusive:
                    break
        return taken

    def route(self, step: Step, taken: list[int], scope: dict[str, Any]) -> None:
        for i, arc in enumerate(step.arcs):
            live = i in taken
            if live:
                for key, value in arc.set.items():
                    self.st.vars[strip_scope(key)] = self.r.render(value, scope)
            self.token(arc.step, step.name, live)

    def token(self, target: str, source: str, live: bool) -> None:
        st = self.st
        preds = self.pb.predecessors.get(target, ())
        if source not in preds:  # loop back-edge: re-enter on a live arc
            if live:
                self.activate(target)
            return
        if st.step_status.get(target) in ("running", "done", "failed", "skipped") and len(preds) <= 1:
            if live and st.step_status.get(target) != "running":
                self.activate(target)  # re-entry through a cycle of single-upstream steps
            return
        if len(preds) <= 1:
            self.activate(target) if live else self.skip(target)
            return
        got = st.tokens.setdefault(target, {})
        got[source] = got.get(source, False) or live
        if len(got) < len(preds):
            return
        del st.tokens[target]
        self.activate(target) if any(got.values()) else self.skip(target)

    def skip(self, name: str) -> None:
        self.st.step_status[name] = "skipped"
        self.out.append(EmitEvent(event_type=EventType.STEP_SKIPPED, step=name))
        for arc in self.pb.steps[name].arcs:
            self.token(arc.step, name, False)

    def fail_step(self, name: str, error: str) -> None:
        """Semantics rule 1: a failure fails the execution unless an explicit arc condition routes it."""
        st = self.st
        st.step_status[name] = "failed"
        step = self.pb.steps[name]
        self.out.append(EmitEvent(event_type=EventType.STEP_FAILED, step=name, payload={"error": error}))
        outcome = {"status": "error", "error": error}
        try:
            # `call.error`, NoETL's name for the event its arcs see when a step's call failed
            scope = self.context({"output": outcome, "event": {"name": str(EventType.CALL_ERROR)}})
            taken = self.choose(step, scope, explicit_only=True)
        except TemplateError:
            taken = []
        if taken:
            self.data.set_result(name, outcome)
            self.route(step, taken, scope)
        else:
            st.failures.append(error)

    # --- events -------------------------------------------------------------------------------
    def on_finished(self, event: EngineEvent) -> None:
        pending = self.st.pending.pop(event.command_id, None) if event.command_id is not None else None
        if pending is None:
            return  # unknown or already finished: exactly-once
        step = self.pb.steps[pending.step]
        ok = event.kind == "command_done" or (event.kind == "child_done" and not event.error)
        if pending.claim:
            self.on_claimed(step, ok, event.result, event.error or "command failed")
            return
        if event.kind == "child_done":
            result = child_result(step, event.result)
        else:
            result = event.result
        envelope = pipeline_envelope(result) if ok and step.kind == "pipeline" else None
        if envelope is not None:
            self.st.vars.update(envelope.get("ctx_updates") or {})
            result = pipeline_result(envelope)
        whole = result
        if ok and step.output_select:
            result = selected(result, step.output_select)
        kept = self.keep(result, whole) if ok else result
        if not ok and pending.attempt < pending.max_attempts:
            item = total = None
            if pending.iteration is not None:
                running = self.st.loops[step.name]
                item, total = self.data.item(step.name, running.run, pending.iteration), running.total
            self.issue(step, pending.iteration, item, total, attempt=pending.attempt + 1)
            return
        error = event.error or "command failed"
        if pending.iteration is None:
            if ok:
                self.complete(step.name, result, kept)
            else:
                self.fail_step(step.name, f"step '{step.name}': {error}")
            return
        ls = self.st.loops.get(step.name)
        if ls is None:
            return
        ls.in_flight -= 1
        ls.done += 1
        if ls.in_flight and _loop(step).mode == "sequential":
            waiting = self.pending_iteration(step.name, pending.iteration + 1)
            if waiting is not None:  # issued ahead, after this one
                self.out.append(Release(command_id=waiting, step=step.name))
        if ok:
            self.data.set_loop_result(step.name, ls.run, pending.iteration, kept)
        else:
            ls.failed += 1
            self.data.set_loop_result(step.name, ls.run, pending.iteration, {"status": "error", "error": error})
        if self.st.failures and _loop(step).mode == "sequential":
            pass  # keep going: rule 1 lets running work finish; new iterations of this loop continue too
        if ls.done < ls.total:
            self.fill_loop(step, ahead=event.pipelined)
        elif _loop(step).mode == "cursor":
            self.claim(step)  # frame done: lease the next one (an empty claim ends the loop)
        else:
            self.finish_loop(step)

    def settle(self) -> None:
        st = self.st
        if st.status != "RUNNING" or st.pending:
            return
        results = self.data.results
        if st.failures:
            st.status = "FAILED"
            self.out.append(Finish(status="FAILED", error="; ".join(st.failures), step_results=dict(results)))
            return
        st.status = "COMPLETED"
        if "end" in results:  # only a completed `end` gives a result (a routed failure of it does not)
            result = results["end"] if st.step_status.get("end") == "done" else None
        else:
            result = results.get(st.last_step) if st.last_step else None
        self.out.append(Finish(status="COMPLETED", result=result, step_results=dict(results)))


def start(playbook: Playbook, *, execution_id: int, workload: dict[str, Any], catalog_id: int, now_ms: int,
          mint: Mint, data: ExecutionData) -> tuple[State, list[Decision]]:
    """`data` is the caller's (normally a fresh ExecutionData); its journal holds what to persist."""
    state = State(execution_id=execution_id, catalog_id=catalog_id,
                  workload={**playbook.workload, **(workload or {})})
    run = _Run(playbook, state, data, mint, now_ms)
    run.activate(playbook.entry)
    run.settle()
    return state, run.out


def apply(playbook: Playbook, state: State, event: EngineEvent, *, now_ms: int,
          mint: Mint, data: ExecutionData, resolve: Resolve | None = None) -> tuple[State, list[Decision]]:
    """Takes ownership of `state` and returns it updated: no copy, so an event costs the same with
    ten commands in flight or ten thousand. Callers keep the returned state, never the argument.
    `data` (the caller's, matching `state`) is updated in place; its journal holds what to persist.
    `resolve` loads a stored result a template reads past its stub (engine.stored); it may block."""
    if state.status != "RUNNING":
        return state, []
    run = _Run(playbook, state, data, mint, now_ms, resolve)
    if event.kind == "cancel":
        state.status = "CANCELLED"
        state.pending = {}
        return state, [Finish(status="CANCELLED", error=event.error or "cancelled", step_results=dict(data.results))]
    run.on_finished(event)
    run.settle()
    return state, run.out


def _shipped_context(scope: dict[str, Any]) -> Any:
    """A render scope as a command carries it to a worker: JSON, stored results as their stubs, and
    neither keychain references nor the `token` function (the worker resolves those itself)."""
    return jsonable({k: v for k, v in scope.items() if not isinstance(v, KeychainRef) and v is not token_ref},
                    enc_hook=encode_hook)


def _reads_context(code: Any) -> bool:
    return isinstance(code, str) and re.search(r"\bcontext\b", code) is not None
