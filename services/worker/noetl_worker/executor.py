"""Run one claimed command: read what to run from its context, pick the runner for the tool kind,
and turn every failure into an error string (never an exception escaping, never a hung step)."""

from __future__ import annotations

import asyncio
import traceback
from typing import Any

import msgspec

from noetl_common.keychain_refs import redact
from noetl_common.tools import ToolResult, run_pipeline

from . import keychain, result_tiers, stored_scope
from .tools import (artifact, container_tool, duckdb_tool, ducklake_tool, http_tool, nats_tool, noop, playbook_tool,
                    postgres, python_bridge, script_job, shell_tool, snowflake_tool, subscription_tool, transfer)
from .tools.base import Runner, ToolContext, ToolError

MAX_STDOUT = 64 * 1024  # keep events small; the tail is what explains a failure
PIPELINE_KINDS = frozenset({"pipeline", "task_sequence"})


class Work(msgspec.Struct, kw_only=True):
    """What a command asks for, whichever server spelling its context uses."""

    kind: str
    config: dict[str, Any]
    inputs: dict[str, Any]
    tasks: list[dict[str, Any]] | None
    variables: dict[str, Any]  # pipeline render scope


class Outcome(msgspec.Struct):
    ok: bool
    result: Any = None
    error: str | None = None
    stdout: str = ""


def default_runners() -> dict[str, Runner]:
    return {"http": http_tool.run, "postgres": postgres.run, "duckdb": duckdb_tool.run, "noop": noop.run,
            "python": python_bridge.run, "playbook": playbook_tool.run, "shell": shell_tool.run,
            "transfer": transfer.run, "artifact": artifact.run, "container": container_tool.run,
            "subscription": subscription_tool.run, "script": script_job.run, "nats": nats_tool.run,
            "snowflake": snowflake_tool.run, "ducklake": ducklake_tool.run}


def read_work(context: dict[str, Any], action: str | None) -> Work:
    """Tool kind from `action`, `tool_kind` or `tool.kind`; config from `tool` or `tool_config`;
    inputs from `args` or `input`, over the config's `input` (top-level keys win, as in NoETL);
    pipeline tasks from `pipeline`, `tasks` or a list-valued `tool`. This fleet's shards send
    `tool`, `pipeline` and `args` in the playbook's own form (`tool_config` and `input` are
    restated for NoETL's worker there); NoETL's server sends only `tool_config` and `input`."""
    tool = context.get("tool")
    tasks = context.get("pipeline") or context.get("tasks") or (tool if isinstance(tool, list) else None)
    tool_map = tool if isinstance(tool, dict) else {}
    kind = action or context.get("tool_kind") or tool_map.get("kind") or ""
    if tasks:
        kind = "pipeline"
    config = {k: v for k, v in tool_map.items() if k != "kind"} if tool_map else context.get("tool_config")
    if not isinstance(config, dict):
        config = {}
    inputs = context["args"] if context.get("args") is not None else context.get("input") or {}
    declared = config.get("input")
    nested = declared if isinstance(declared, dict) else {}
    inputs = {**nested, **(inputs if isinstance(inputs, dict) else {})}
    variables = {**(context.get("render_context") or {}), **inputs}
    return Work(kind=str(kind), config=dict(config), inputs=inputs, tasks=list(tasks) if tasks else None,
                variables=variables)


async def run_tasks(work: Work, runners: dict[str, Runner], ctx: ToolContext) -> Any:
    """A pipeline: the shared task-sequence runner with this worker's tool runners per task. A
    task failure is a ToolResult, so the pipeline's policies can retry or route it."""

    async def run_task(kind: str, config: dict[str, Any], inputs: dict[str, Any]) -> ToolResult:
        runner = runners.get(kind)
        if runner is None:
            return ToolResult(ok=False, error=f"this worker has no runner for tool kind {kind!r}")
        try:
            result = await runner(config, inputs, ctx)
        except ToolError as exc:
            details = exc.details
            http = {"status": details["status"], "headers": details.get("headers") or {}} if "status" in details else None
            return ToolResult(ok=False, error=str(exc), error_info=details, http=http)
        except Exception as exc:  # a runner bug is still this task's failure, not the worker's
            return ToolResult(ok=False, error=f"{type(exc).__name__}: {exc}")
        if isinstance(result, dict) and kind == "http":
            return ToolResult(ok=True, result=result, http={"status": result.get("status_code"),
                                                             "headers": result.get("headers") or {}})
        return ToolResult(ok=True, result=result)

    try:
        variables = await stored_scope.load_read_stubs(work.tasks or [], work.variables,
                                                       lambda uri: ctx.credentials.get_result(uri))
    except Exception as exc:
        raise ToolError(f"could not load a stored result the pipeline reads: {exc}") from None
    outcome = await run_pipeline(work.tasks or [], variables, run_task)
    if not outcome.ok:
        raise ToolError(outcome.error or "pipeline failed")
    return outcome.result


async def execute(command_context: dict[str, Any], tool_kind: str | None, runners: dict[str, Runner],
                  ctx: ToolContext, catalog_id: Any = None) -> Outcome:
    try:
        command_context, secrets = await keychain.fill(command_context, catalog_id, ctx.execution_id, ctx.credentials)
    except keychain.KeychainUnavailable as exc:
        return Outcome(ok=False, error=str(exc))
    scope = command_context.get("render_context")
    ctx.scope = scope if isinstance(scope, dict) else None
    outcome = await _run(command_context, tool_kind, runners, ctx)
    if secrets:  # keychain values the step echoes (result, output, error) stay out of the events
        return Outcome(ok=outcome.ok, result=redact(outcome.result, secrets),
                       error=redact(outcome.error, secrets), stdout=redact(outcome.stdout, secrets))
    return outcome


async def _run(command_context: dict[str, Any], tool_kind: str | None, runners: dict[str, Runner],
               ctx: ToolContext) -> Outcome:
    try:
        work = read_work(command_context, tool_kind)
    except Exception as exc:
        return Outcome(ok=False, error=f"unreadable command context: {type(exc).__name__}: {exc}")
    kind = "pipeline" if work.kind in PIPELINE_KINDS else work.kind
    if kind != "pipeline" and kind not in runners:
        return Outcome(ok=False, error=f"this worker has no runner for tool kind {kind!r} "
                                       f"(known: {', '.join(sorted(runners))})")
    try:
        if kind == "pipeline":
            result = await asyncio.wait_for(run_tasks(work, runners, ctx), ctx.timeout_seconds)
        else:
            result = await asyncio.wait_for(runners[kind](work.config, work.inputs, ctx), ctx.timeout_seconds)
        result = await result_tiers.offload(result, work.config, ctx, pipeline=kind == "pipeline")
    except ToolError as exc:
        return _done(ctx, ok=False, error=str(exc))
    except asyncio.TimeoutError:
        return _done(ctx, ok=False, error=f"tool {kind!r} timed out after {ctx.timeout_seconds:g}s")
    except Exception as exc:
        return _done(ctx, ok=False, error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}")
    try:
        msgspec.json.encode(result)
    except TypeError as exc:
        return _done(ctx, ok=False, error=f"tool result is not JSON-serialisable: {exc}")
    return _done(ctx, ok=True, result=result)


def _done(ctx: ToolContext, *, ok: bool, result: Any = None, error: str | None = None) -> Outcome:
    return Outcome(ok=ok, result=result, error=error, stdout="".join(ctx.stdout)[-MAX_STDOUT:])
