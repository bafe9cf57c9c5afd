"""`script:` sources for the postgres, duckdb and python tools:
`script: {uri, source: {type: inline|file|gcs|s3|http, code, ...}}`.

`inline` carries the text; `file` reads `uri` under the worker's script root (NOETL_SCRIPT_ROOT)
and refuses paths that leave it. Object stores (gcs, s3, azure) need a backend and credentials
this worker does not have: the step fails naming the missing backend rather than running
something else."""

from __future__ import annotations

from typing import Any

from .base import ToolContext, ToolError

OBJECT_STORES = {"gcs": "Google Cloud Storage", "s3": "AWS S3", "azure": "Azure Blob Storage",
                 "minio": "S3-compatible object storage"}


def script_text(kind: str, script: Any, ctx: ToolContext) -> str:
    if not isinstance(script, dict):
        raise ToolError(f"{kind} tool `script` must be a mapping with `uri` and `source`")
    source = script.get("source") or {}
    if not isinstance(source, dict):
        raise ToolError(f"{kind} tool `script.source` must be a mapping with `type`")
    uri = str(script.get("uri") or source.get("path") or "")
    source_type = str(source.get("type") or _type_from_uri(uri)).lower()
    if source_type == "inline":
        if not source.get("code"):
            raise ToolError(f"{kind} script source `inline` needs `code`")
        return str(source["code"])
    if source_type in OBJECT_STORES:
        raise ToolError(f"{kind} script {uri!r} is in {OBJECT_STORES[source_type]} (source type {source_type!r}); "
                        f"this worker has no {source_type} backend configured to read it")
    if source_type != "file":
        raise ToolError(f"{kind} script source type {source_type!r} is not supported by this worker "
                        "(inline and file are)")
    return _read_file(kind, uri, ctx)


def _type_from_uri(uri: str) -> str:
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else "file"
    return {"gs": "gcs", "s3": "s3", "https": "http", "http": "http", "file": "file"}.get(scheme, scheme)


def _read_file(kind: str, uri: str, ctx: ToolContext) -> str:
    if not uri:
        raise ToolError(f"{kind} script needs `uri` (the file path under the worker's script root)")
    root = ctx.script_root.resolve()
    path = (root / uri.removeprefix("file://")).resolve()
    if root not in path.parents:
        raise ToolError(f"{kind} script {uri!r} is outside the worker's script root")
    try:
        return path.read_text()
    except OSError as exc:
        raise ToolError(f"cannot read {kind} script {uri!r} under {root}: {exc.strerror}") from None
