"""`kind: python` on the worker: the shared in-process runner, on a step thread so the loop stays
free (step_threads). A step abandoned by its timeout or a cancel is interrupted inside that thread
(an asynchronous exception, delivered at the next bytecode), so runaway code stops instead of
burning a core for the life of the worker. A C call that never returns cannot be interrupted
this way."""

from __future__ import annotations

from typing import Any

from noetl_common.tools import run_python

from .base import ToolContext, ToolError
from .scripts import script_text


async def run(config: dict[str, Any], inputs: dict[str, Any], ctx: ToolContext) -> Any:
    code = config.get("code") or (script_text("python", config["script"], ctx) if config.get("script") else None)
    if not code:
        raise ToolError("python tool needs `code` or `script`")
    outcome = await ctx.step_threads.run(run_python, code, inputs)
    ctx.stdout.append(outcome.stdout)
    if not outcome.ok:
        raise ToolError(outcome.error or "python tool failed")
    return outcome.result
