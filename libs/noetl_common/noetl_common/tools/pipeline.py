"""Pipelines (`tool:` as a list): tasks run in order on one worker with `_prev`, task `set:` and
`spec.policy.rules` (retry / continue / break / jump / fail). The step result is the last task's
result; `then.set` updates come back as `ctx_updates` for later steps."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

from ..dsl.scopes import strip_scope, with_data
from ..dsl.templates import Renderer, TemplateError
from .result import ToolResult

TaskRunner = Callable[[str, dict[str, Any], dict[str, Any]], Awaitable[ToolResult]]
MAX_RETRY_AFTER = 30.0  # seconds; a longer Retry-After would outlast the step's own timeout
TASK_META = ("name", "kind", "input", "args", "set", "spec", "desc")


async def run_pipeline(tasks: list[dict[str, Any]], variables: dict[str, Any], run_task: TaskRunner, *,
                       renderer: Renderer | None = None, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                       ) -> ToolResult:
    renderer = renderer or Renderer()
    names = [t["name"] for t in tasks]
    running = dict(variables)
    running.setdefault("ctx", {})
    results: dict[str, Any] = {}
    ctx_updates: dict[str, Any] = {}
    prev: Any = None
    stdout: list[str] = []
    attempts: dict[int, int] = {}
    i = 0
    while i < len(tasks):
        task = tasks[i]
        attempt = attempts.get(i, 0) + 1
        attempts[i] = attempt
        scope = {**running, "_prev": prev, "results": results, "_attempt": attempt, "_task": task["name"]}
        try:
            inputs = renderer.render(dict(task.get("input") or task.get("args") or {}), scope)
            config = renderer.render({k: v for k, v in task.items() if k not in TASK_META}, {**scope, **inputs})
        except TemplateError as exc:
            return ToolResult(ok=False, error=f"task '{task['name']}': {exc}", stdout="".join(stdout))
        outcome = await run_task(task["kind"], config, {**inputs})
        stdout.append(outcome.stdout)
        envelope = policy_view(outcome)
        if outcome.ok:
            results[task["name"]] = outcome.result
            running[task["name"]] = with_data(outcome.result)
            prev = outcome.result
            for key, value in (task.get("set") or {}).items():
                running[key] = renderer.render(value, {**running, "output": outcome.result})
        action, then = _decide(task, envelope, {**running, "_attempt": attempt}, renderer, outcome.ok)
        for key, value in (then.get("set") or {}).items():
            rendered = renderer.render(value, {**running, "output": envelope, "_attempt": attempt})
            name = strip_scope(key)
            if key.startswith("iter."):  # iteration-local (semantics rule 6): never leaves this command
                running["iter"] = {**(running.get("iter") or {}), name: rendered}
                continue
            ctx_updates[name] = rendered
            running[name] = rendered
            running["ctx"] = {**running["ctx"], name: rendered}
        if action == "retry":
            limit = int(then.get("attempts", 3))
            if attempt < limit:
                delay = float(then.get("delay", 1.0))
                backoff = then.get("backoff", "none")
                factor = attempt if backoff == "linear" else 2 ** (attempt - 1) if backoff == "exponential" else 1
                # A server that says when to come back (429/503 Retry-After) is waited for, capped.
                told = (envelope.get("error") or {}).get("retry_after") or 0
                await sleep(max(delay * factor, min(float(told), MAX_RETRY_AFTER)))
                continue
            return ToolResult(ok=False, error=f"task '{task['name']}' failed after {attempt} attempt(s): "
                                               f"{outcome.error or 'retry condition still true'}",
                              stdout="".join(stdout))
        if action == "fail":
            return ToolResult(ok=False, error=f"task '{task['name']}' failed: {outcome.error or 'policy fail'}",
                              stdout="".join(stdout))
        if action == "break":
            break
        if action == "jump":
            target = then.get("to")
            i = max(i - 1, 0) if target == "previous" else names.index(target) if target in names else i + 1
            continue
        i += 1
    return ToolResult(ok=True, result={"result": prev, "tasks": results, "ctx_updates": ctx_updates},
                      stdout="".join(stdout))


def policy_view(outcome: ToolResult) -> dict[str, Any]:
    """`output` as policy rules see it (NoETL's envelope): `{status, data, error: {kind, retryable,
    message, ...}, http: {status, headers}}`. A failure the tool did not classify is not retryable,
    so a rule on `output.error.retryable` retries only what the tool says is transient."""
    view: dict[str, Any] = {"status": "success" if outcome.ok else "error", "data": outcome.result, "error": None}
    if not outcome.ok:
        view["error"] = {"kind": "error", "retryable": False, **(outcome.error_info or {}), "message": outcome.error}
    if outcome.http is not None:
        view["http"] = outcome.http
    return view


def _decide(task: dict[str, Any], envelope: dict[str, Any], scope: dict[str, Any], renderer: Renderer,
            ok: bool) -> tuple[str, dict[str, Any]]:
    rules = (((task.get("spec") or {}).get("policy") or {}).get("rules")) or []
    for rule in rules:
        if "else" in rule:
            body = rule["else"] or {}
            then = body.get("then", body)
        elif renderer.truthy(rule.get("when"), {**scope, "output": envelope}):
            then = rule.get("then") or {}
        else:
            continue
        return str(then.get("do") or ("continue" if ok else "fail")), then
    return ("continue" if ok else "fail"), {}
