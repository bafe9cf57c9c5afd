"""Run one claimed command: pick the runner for its tool kind, turn every failure into an error
string (never an exception escaping, never a hung step)."""

from __future__ import annotations

import asyncio
import traceback
from typing import Any

import msgspec

from noetl_common.tools import ToolResult, run_pipeline

from .tools import duckdb_tool, http_tool, noop, playbook_tool, postgres, python_bridge
from .tools.base import Runner, ToolContext, ToolError


class Outcome(msgspec.Struct):
    ok: bool
    result: Any = None
    error: str | None = None
    stdout: str = ""

    def with_stdout(self, ctx: ToolContext) -> "Outcome":
        return msgspec.structs.replace(self, stdout="".join(ctx.stdout)[-MAX_STDOUT:])


MAX_STDOUT = 64 * 1024  # keep events small; the tail is what explains a failure


def default_runners() -> dict[str, Runner]:
    return {"http": http_tool.run, "postgres": postgres.run, "duckdb": duckdb_tool.run, "noop": noop.run,
            "python": python_bridge.run, "playbook": playbook_tool.run}


async def run_tasks(context: dict[str, Any], runners: dict[str, Runner], ctx: ToolContext) -> Any:
    """A pipeline: the shared task-sequence runner with this worker's tool runners per task."""
    tasks = context.get("pipeline") or []

    async def run_task(kind: str, config: dict[str, Any], inputs: dict[str, Any]) -> ToolResult:
        runner = runners.get(kind)
        if runner is None:
            return ToolResult(ok=False, error=f"this worker has no runner for tool kind {kind!r}")
        try:
            return ToolResult(ok=True, result=await runner(config, inputs, ctx))
        except ToolError as exc:
            return ToolResult(ok=False, error=str(exc))

    variables = {**(context.get("render_context") or {}), **(context.get("input") or {})}
    outcome = await run_pipeline(tasks, variables, run_task)
    if not outcome.ok:
        raise ToolError(outcome.error or "pipeline failed")
    return outcome.result


async def execute(command_context: dict[str, Any], tool_kind: str, runners: dict[str, Runner],
                  ctx: ToolContext) -> Outcome:
    config = dict(command_context.get("tool_config") or {})
    inputs = dict(command_context.get("input") or command_context.get("args") or {})
    kind = "pipeline" if command_context.get("pipeline") else tool_kind
    if kind != "pipeline" and kind not in runners:
        return Outcome(ok=False, error=f"this worker has no runner for tool kind {kind!r} "
                                       f"(known: {', '.join(sorted(runners))})")
    work = run_tasks(command_context, runners, ctx) if kind == "pipeline" else runners[kind](config, inputs, ctx)
    try:
        result = await asyncio.wait_for(work, ctx.timeout_seconds)
    except ToolError as exc:
        return Outcome(ok=False, error=str(exc)).with_stdout(ctx)
    except asyncio.TimeoutError:
        return Outcome(ok=False, error=f"tool {kind!r} timed out after {ctx.timeout_seconds:.0f}s").with_stdout(ctx)
    except Exception as exc:
        return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}").with_stdout(ctx)
    try:
        msgspec.json.encode(result)
    except TypeError as exc:
        return Outcome(ok=False, error=f"tool result is not JSON-serialisable: {exc}").with_stdout(ctx)
    return Outcome(ok=True, result=result).with_stdout(ctx)
