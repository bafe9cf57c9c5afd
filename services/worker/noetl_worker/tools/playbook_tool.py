"""`kind: playbook` inside a pipeline: start the child execution and wait for it (semantics rule 4).
With `return_step` the result is that child step's result; otherwise the child's status and result."""

from __future__ import annotations

from typing import Any

from .base import ToolContext, ToolError


async def run(config: dict[str, Any], inputs: dict[str, Any], ctx: ToolContext) -> Any:
    path = config.get("path")
    if not path:
        raise ToolError("playbook tool needs `path`")
    workload = {**(config.get("payload") or {}), **inputs}
    try:
        child = await ctx.credentials.run_child(str(path), workload, ctx.execution_id, ctx.timeout_seconds)
    except Exception as exc:
        raise ToolError(f"sub-playbook {path}: {exc}") from None
    if child.get("status") != "COMPLETED":
        raise ToolError(f"sub-playbook {path} ended {child.get('status')}: {child.get('error')}")
    return_step = config.get("return_step") or config.get("result_step")
    if return_step:
        steps = child.get("steps") or {}
        if return_step not in steps:
            raise ToolError(f"sub-playbook {path} has no result for return_step {return_step!r}")
        return steps[return_step]
    return {"status": child.get("status"), "result": child.get("result")}
