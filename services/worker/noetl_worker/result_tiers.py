"""A tool's `output: {inline_max_bytes, store: {kind}}`, NoETL's result tiers: a successful result
whose JSON is larger than `inline_max_bytes` (0: every result) is put in the execution's result
store and the outcome carries NoETL's reference envelope instead (`{status, context: {data:
{_ref}}, reference: {kind: result_ref, ref, store, scope, meta}}`), which the shard resolves, so
the next steps read the value through the reference (`{{ step._ref }}` tells them). Every tier
NoETL names (`kv`, `object`, `auto`, ...) is this fleet's one store, the owning shard's
`noetl.result_store`: `reference.store` says `db`, `meta.requested_store` what the playbook asked.

`gcs` also writes the value, as JSON, to the object NoETL's GCS backend would
(`gs://$NOETL_GCS_BUCKET/$NOETL_GCS_PREFIX<ref without noetl://>`, bucket `noetl-results` and
prefix `results/` by default, `output.store.bucket` naming another): `reference.store` is then
`gcs` and `meta.uri` the object, which `kind: artifact` and a pipeline's lazy loads read back
(`load`). The shard keeps its copy too: its engine resolves references from its own store."""

from __future__ import annotations

import os
from typing import Any, Awaitable, Callable

import msgspec

from noetl_common.engine.values import pipeline_result

from . import gcs_objects
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


async def offload(result: Any, config: dict[str, Any], ctx: ToolContext, pipeline: bool = False) -> Any:
    """`result` as is, or its reference envelope when the tool's `output` sends it to the store.
    `pipeline`: `result` is a task list's envelope, whose GCS object holds the step's result as the
    engine sees it (its last task's fields, `results` and each task's), what an artifact get answers."""
    limit = budget(config)
    if limit is None or len(_encoder.encode(result)) <= limit:
        return result
    output = config["output"]
    requested = (output.get("store") or {}).get("kind") if isinstance(output.get("store"), dict) else None
    try:
        stored = await ctx.credentials.put_result(ctx.execution_id, ctx.step or "result", result, ctx.step)
    except Exception as exc:
        raise ToolError(f"storing the result (output.store {requested or 'auto'}): {exc}") from None
    meta: dict[str, Any] = {"bytes": stored.get("bytes"), "sha256": stored.get("sha256"),
                            "requested_store": requested or "auto"}
    reference = {"kind": "result_ref", "ref": stored.get("ref"), "store": stored.get("store"),
                 "scope": stored.get("scope"), "meta": meta}
    if requested == "gcs":
        uri = gcs_uri(str(stored.get("ref")), output["store"].get("bucket"))
        value = pipeline_result(result) if pipeline and isinstance(result, dict) else result
        await gcs_objects.upload(uri, _encoder.encode(value), "application/json")
        reference["store"] = "gcs"
        meta["uri"] = uri
    return {"status": "COMPLETED", "context": {"data": {"_ref": stored.get("ref")}}, "reference": reference}


def gcs_uri(ref: str, bucket: Any = None) -> str:
    """The object NoETL's GCS backend keeps a reference's value in."""
    key = ref.replace("noetl://", "").replace(":", "/")
    return (f"gs://{bucket or os.environ.get('NOETL_GCS_BUCKET') or 'noetl-results'}/"
            f"{os.environ.get('NOETL_GCS_PREFIX', 'results/')}{key}")


async def load(reference: Any, get_result: Callable[[str], Awaitable[Any]]) -> Any:
    """The value a reference names: from its GCS object when it is in the `gcs` tier, else from the
    result store (`get_result` of its `noetl://` URI)."""
    if isinstance(reference, dict) and reference.get("store") == "gcs":
        uri = (reference.get("meta") or {}).get("uri")
        if isinstance(uri, str) and uri.startswith("gs://"):
            return msgspec.json.decode(await gcs_objects.download(uri))
    ref = reference.get("ref") if isinstance(reference, dict) else reference
    return await get_result(str(ref))
