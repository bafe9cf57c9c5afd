"""`script:` sources for the postgres, duckdb and python tools:
`script: {uri, source: {type: inline|file|gcs|s3|http, code, ...}}`.

`inline` carries the text; `file` reads `uri` under the worker's script root (NOETL_SCRIPT_ROOT)
and refuses paths that leave it; `http` fetches `source.endpoint` (or an http(s) `uri`); `gcs`
downloads the `gs://` `uri` with google-cloud-storage (gcs_objects.py: GOOGLE_APPLICATION_CREDENTIALS
or STORAGE_EMULATOR_HOST; `source.auth` is not used for it); `s3` (and `minio`, S3-compatible) gets
the `s3://` `uri` with boto3 (s3_objects.py), signed with the keys of the credential `source.auth`
names, in `source.region`. Azure needs a backend this worker does not have: the step fails naming it
rather than running something else."""

from __future__ import annotations

from typing import Any

import aiohttp

from .. import gcs_objects, s3_objects
from .base import ToolContext, ToolError, credential_data

MAX_SCRIPT_BYTES = 4 * 1024 * 1024

S3_TYPES = ("s3", "minio")  # minio speaks S3: the same client, its endpoint from the credential
OBJECT_STORES = {"azure": "Azure Blob Storage"}


async def script_text(kind: str, script: Any, ctx: ToolContext) -> str:
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
    if source_type == "gcs":
        text = await gcs_objects.download(uri)
        if len(text) > MAX_SCRIPT_BYTES:
            raise ToolError(f"{kind} script {uri}: larger than {MAX_SCRIPT_BYTES} bytes")
        return text.decode("utf-8", errors="replace")
    if source_type in S3_TYPES:
        return await _from_s3(kind, source, uri, ctx)
    if source_type in OBJECT_STORES:
        raise ToolError(f"{kind} script {uri!r} is in {OBJECT_STORES[source_type]} (source type {source_type!r}); "
                        f"this worker has no {source_type} backend configured to read it")
    if source_type == "http":
        return await _fetch(kind, source, uri, ctx)
    if source_type != "file":
        raise ToolError(f"{kind} script source type {source_type!r} is not supported by this worker "
                        "(inline, file, http, gcs and s3 are)")
    return _read_file(kind, uri, ctx)


async def _from_s3(kind: str, source: dict[str, Any], uri: str, ctx: ToolContext) -> str:
    auth = source.get("auth") or source.get("credential")
    if isinstance(auth, dict):  # `{key: name}`, as map-form auth elsewhere
        auth = auth.get("key") or auth.get("name")
    data = await credential_data(str(auth), ctx) if auth else None
    access = s3_objects.S3Access.of(data, source.get("region"))
    try:
        body = await s3_objects.download(uri, access, max_bytes=MAX_SCRIPT_BYTES, timeout=ctx.timeout_seconds)
    except ToolError as exc:
        raise ToolError(f"{kind} script: {exc}", details=exc.details) from None
    return body.decode("utf-8", errors="replace")


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


async def _fetch(kind: str, source: dict[str, Any], uri: str, ctx: ToolContext) -> str:
    url = str(source.get("endpoint") or source.get("url") or uri)
    if not url.startswith(("http://", "https://")):
        raise ToolError(f"{kind} script source `http` needs `endpoint` (an http(s) URL), got {url!r}")
    try:
        seconds = min(float(source.get("timeout") or 30), ctx.timeout_seconds)
    except (TypeError, ValueError):
        raise ToolError(f"{kind} script source timeout must be a number, got {source.get('timeout')!r}") from None
    method = str(source.get("method") or "GET").upper()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds)) as session:
            async with session.request(method, url, headers=source.get("headers") or None) as resp:
                body = await resp.content.read(MAX_SCRIPT_BYTES + 1)
                if resp.status != 200:
                    raise ToolError(f"{kind} script {url}: answered {resp.status}")
    except ToolError:
        raise
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ToolError(f"{kind} script {url}: {type(exc).__name__}: {exc}") from None
    if len(body) > MAX_SCRIPT_BYTES:
        raise ToolError(f"{kind} script {url}: larger than {MAX_SCRIPT_BYTES} bytes")
    return body.decode("utf-8", errors="replace")
