"""A tool's `output: {inline_max_bytes, store: {kind}}`, NoETL's result tiers: a successful result
whose JSON is larger than `inline_max_bytes` (0: every result) is put in the execution's result
store and the outcome carries NoETL's reference envelope instead (`{status, context: {data:
{_ref}}, reference: {kind: result_ref, ref, store, scope, meta}}`), which the shard resolves, so
the next steps read the value through the reference (`{{ step._ref }}` tells them). Every tier
NoETL names (`kv`, `object`, `gcs`, `auto`, ...) is this fleet's one store, the owning shard's
`noetl.result_store`: `reference.store` says `db`, `meta.requested_store` what the playbook asked."""

from __future__ import annotations

from typing import Any

import msgspec

from .tools.base import ToolContext, ToolError

_encoder = msgspec.json.Encoder()


def budget(config: dict[str, Any]) -> int | None:
    """The inline limit a tool's `output` sets, or None when it keeps results inline as usual."""
    output = config.get("output")
    if not isinstance(output, dict):
        return None
    limit = output.get("inline_max_bytes")
    if limit is None:
        return 0 if isinstance(output.get("store"), dict) and output["store"].get("kind") not in (None, "", "inline") \
            else None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ToolError(f"output.inline_max_bytes must be a non-negative integer, got {limit!r}")
    return limit


async def offload(result: Any, config: dict[str, Any], ctx: ToolContext) -> Any:
    """`result` as is, or its reference envelope when the tool's `output` sends it to the store."""
    limit = budget(config)
    if limit is None or len(_encoder.encode(result)) <= limit:
        return result
    output = config["output"]
    requested = (output.get("store") or {}).get("kind") if isinstance(output.get("store"), dict) else None
    try:
        stored = await ctx.credentials.put_result(ctx.execution_id, ctx.step or "result", result, ctx.step)
    except Exception as exc:
        raise ToolError(f"storing the result (output.store {requested or 'auto'}): {exc}") from None
    reference = {"kind": "result_ref", "ref": stored.get("ref"), "store": stored.get("store"),
                 "scope": stored.get("scope"), "meta": {"bytes": stored.get("bytes"), "sha256": stored.get("sha256"),
                                                        "requested_store": requested or "auto"}}
    return {"status": "COMPLETED", "context": {"data": {"_ref": stored.get("ref")}}, "reference": reference}
