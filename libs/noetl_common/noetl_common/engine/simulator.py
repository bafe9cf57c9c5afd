"""Runs a playbook end to end in memory: the engine plus an in-process worker (python runs for
real). Used by the conformance tests and the engine benchmark."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import Counter
from typing import Any, Awaitable, Callable

import msgspec

from ..dsl.model import Playbook
from ..dsl.templates import Renderer
from ..tools import ToolResult, run_pipeline, run_python
from .core import apply, start
from .data import ExecutionData
from .decisions import Finish, IssueCommand, StartChild
from .events import EngineEvent
from .state import State

ToolFn = Callable[[str, dict[str, Any], dict[str, Any]], Awaitable[ToolResult]]


class Outcome(msgspec.Struct):
    status: str
    result: Any
    error: str | None
    step_results: dict[str, Any]
    loop_results: dict[str, list[Any]]
    issued: dict[str, int]
    events: int
    state: State
    data: ExecutionData
    log: list[tuple[int, EngineEvent]]


async def default_tool(kind: str, config: dict[str, Any], inputs: dict[str, Any]) -> ToolResult:
    if kind == "python":
        code = config.get("code")
        if not code:
            return ToolResult(ok=False, error="python tool needs `code`")
        return run_python(code, inputs)
    if kind == "noop":
        return ToolResult(ok=True, result=config.get("result", {"status": "ok", "message": config.get("message")}))
    return ToolResult(ok=False, error=f"the simulator has no runner for tool kind {kind!r}")


class Simulator:
    def __init__(self, playbooks: dict[str, Playbook] | None = None, *, tool: ToolFn = default_tool,
                 seed: int | None = None, pipelined: bool = False) -> None:
        """`pipelined`: outcomes say the worker takes a sequential loop's iterations ahead (then a
        command issued `after` another runs only once that one has)."""
        self.playbooks = playbooks or {}
        self.tool = tool
        self.random = random.Random(seed) if seed is not None else None
        self.pipelined = pipelined
        self.ids = itertools.count(1_000_000)
        self.renderer = Renderer()

    def mint(self) -> int:
        return next(self.ids)

    async def run(self, playbook: Playbook, workload: dict[str, Any] | None = None,
                  execution_id: int = 1) -> Outcome:
        issued: Counter[str] = Counter()
        loops: dict[str, list[Any]] = {}
        log: list[tuple[int, EngineEvent]] = []
        data = ExecutionData()
        state, decisions = start(playbook, execution_id=execution_id, workload=workload or {}, catalog_id=1,
                                 now_ms=0, mint=self.mint, data=data)
        queue: list[Any] = []
        finish: Finish | None = None
        events = 0
        while True:
            data.take_journal()  # in memory there is nothing to persist
            for d in decisions:
                if isinstance(d, (IssueCommand, StartChild)):
                    issued[d.step] += 1
                    queue.append(d)
                elif isinstance(d, Finish):
                    finish = d
            if finish is not None or not queue:
                break
            runnable = [i for i, c in enumerate(queue) if getattr(c, "after", None) not in state.pending]
            index = runnable[self.random.randrange(len(runnable))] if self.random else runnable[0]
            command = queue.pop(index)
            event = await self.execute(command)
            if self.pipelined:
                event = msgspec.structs.replace(event, pipelined=True)
            if event.kind == "command_done" and getattr(command, "iteration", None) is not None:
                loops.setdefault(command.step, []).append((command.iteration, event.result))
            events += 1
            log.append((events, event))
            state, decisions = apply(playbook, state, event, now_ms=events, mint=self.mint, data=data)
        if finish is None:
            finish = Finish(status="STUCK", error="no command left to run and no terminal decision")
        per_loop = {step: [r for _, r in sorted(items, key=lambda p: p[0])] for step, items in loops.items()}
        for step, result in data.results.items():
            if isinstance(result, dict) and isinstance(result.get("results"), list) and "stats" in result:
                per_loop[step] = result["results"]
        return Outcome(status=finish.status, result=finish.result, error=finish.error,
                       step_results=dict(data.results), loop_results=per_loop, issued=dict(issued),
                       events=events, state=state, data=data, log=log)

    async def execute(self, command: Any) -> EngineEvent:
        if isinstance(command, StartChild):
            child = self.playbooks.get(command.path)
            if child is None:
                return EngineEvent(kind="child_done", command_id=command.command_id,
                                   error=f"sub-playbook {command.path!r} is not registered")
            sub = await Simulator(self.playbooks, tool=self.tool).run(child, command.workload)
            return EngineEvent(kind="child_done", command_id=command.command_id,
                               result={"status": sub.status, "result": sub.result, "steps": sub.step_results},
                               error=sub.error if sub.status != "COMPLETED" else None)
        if command.pipeline:
            outcome = await run_pipeline(command.pipeline, command.context or {}, self.tool, renderer=self.renderer,
                                         sleep=lambda s: asyncio.sleep(0))
        else:
            outcome = await self.tool(command.tool_kind, command.tool_config, command.input)
        if outcome.ok:
            return EngineEvent(kind="command_done", command_id=command.command_id, result=outcome.result)
        return EngineEvent(kind="command_failed", command_id=command.command_id, error=outcome.error)
