"""`kind: artifact`: a result kept out of the event log, by reference. `action: get` (default) with
`result_ref` (what `{{ step._ref }}` renders to: NoETL's `{kind: result_ref, ref}` or the `noetl://`
URI itself) or `uri` answers the stored value itself, as NoETL's worker does; `action: put` with
`data` (and `name`, default the step's) stores a value and answers its reference
`{kind: result_ref, ref, store, scope, meta: {bytes, sha256}}`. The store is the control plane's
result store (`/api/result`), on the shard that owns the execution; a reference in the `gcs` tier
is read from its GCS object (result_tiers.load)."""

from __future__ import annotations

from typing import Any

from noetl_common.result_refs import PREFIX

from .. import result_tiers
from .base import ToolContext, ToolError

ACTIONS = ("get", "put")


def ref_text(value: Any) -> str:
    """The `noetl://` URI a `result_ref`/`uri` names, or a ToolError saying what was given."""
    if isinstance(value, dict):
        value = value.get("ref") or value.get("uri")
    if isinstance(value, str) and value.startswith(PREFIX):
        return value
    if value in (None, ""):
        raise ToolError("artifact get needs `result_ref` (a step's `_ref`) or `uri`; it was empty "
                        "(the step it names kept its result inline?)")
    raise ToolError(f"artifact `result_ref` must be a {PREFIX}... reference, got {str(value)[:200]!r}")


async def run(config: dict[str, Any], inputs: dict[str, Any], ctx: ToolContext) -> Any:
    merged = {**config, **inputs}
    action = str(merged.get("action") or "get").lower()
    if action not in ACTIONS:
        raise ToolError(f"artifact `action` must be get or put, got {action!r}")
    if action == "get":
        given = merged.get("result_ref") or merged.get("uri")
        ref = ref_text(given)
        try:
            return await result_tiers.load(given if isinstance(given, dict) else ref, ctx.credentials.get_result)
        except Exception as exc:
            raise ToolError(f"artifact get {ref}: {exc}") from None
    if "data" not in merged:
        raise ToolError("artifact put needs `data`")
    name = str(merged.get("name") or ctx.step or "artifact")
    try:
        stored = await ctx.credentials.put_result(ctx.execution_id, name, merged["data"], ctx.step)
    except Exception as exc:
        raise ToolError(f"artifact put {name!r}: {exc}") from None
    return {"kind": "result_ref", "ref": stored.get("ref"), "store": stored.get("store"),
            "scope": stored.get("scope"), "meta": {"bytes": stored.get("bytes"), "sha256": stored.get("sha256")}}
