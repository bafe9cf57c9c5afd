"""`kind: python` on the worker: the shared in-process runner, on a step thread so the loop stays
free (step_threads). A step abandoned by its timeout or a cancel is interrupted inside that thread
(an asynchronous exception, delivered at the next bytecode), so runaway code stops instead of
burning a core for the life of the worker. A C call that never returns cannot be interrupted
this way."""

from __future__ import annotations

from typing import Any

from noetl_common.tools import run_python

from .base import ToolContext, ToolError


def _script_code(script: Any, ctx: ToolContext) -> str:
    """`script: {uri, source: {type: inline|file, code}}`; file paths resolve under the script root."""
    if not isinstance(script, dict):
        raise ToolError("python tool `script` must be a mapping with `uri` and `source`")
    source = script.get("source") or {}
    kind = source.get("type", "file")
    if kind == "inline" and source.get("code"):
        return str(source["code"])
    if kind != "file":
        raise ToolError(f"python script source type {kind!r} is not supported by this worker")
    root = ctx.script_root.resolve()
    path = (root / str(script.get("uri", ""))).resolve()
    if root not in path.parents:
        raise ToolError(f"script {script.get('uri')!r} is outside the worker's script root")
    try:
        return path.read_text()
    except OSError as exc:
        raise ToolError(f"cannot read script {script.get('uri')!r}: {exc.strerror}") from None


async def run(config: dict[str, Any], inputs: dict[str, Any], ctx: ToolContext) -> Any:
    code = config.get("code") or (_script_code(config["script"], ctx) if config.get("script") else None)
    if not code:
        raise ToolError("python tool needs `code` or `script`")
    outcome = await ctx.step_threads.run(run_python, code, inputs)
    ctx.stdout.append(outcome.stdout)
    if not outcome.ok:
        raise ToolError(outcome.error or "python tool failed")
    return outcome.result
