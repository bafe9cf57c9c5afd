"""`kind: http`: `{status_code, headers, body, data}` (body parsed as JSON when it is JSON; `data`
is the same value under the Python-era name). A non-2xx answer fails the step unless its status
is listed in `accept_status` (or `accept_status: true`), per semantics rule 1.

A failure carries NoETL's classification for policy rules (`output.error`): `kind` (server_error,
rate_limit, auth, not_found, client_error, timeout, connection), `retryable` (5xx, 408, 429 and
transport failures), `status`, `retry_after` (seconds, from the header) and the parsed `body`.

Body: `json:` is sent as JSON; the Python-era `payload:`/`data:` maps are sent as JSON too (as
query parameters on GET/DELETE, which is what NoETL did with them); a string `body:`/`data:` is
sent as is; `form:` is form-encoded.

Auth: `auth: {source: adc}` (or NoETL's Rust spelling `{type: gcp_adc}`, optional `scopes`, default
cloud-platform) sends `Authorization: Bearer <token>` for the worker's Application Default
Credentials (google_adc.py); not getting a token fails the step before any request. Other `auth`
forms are not read by this tool.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from .base import ToolContext, ToolError
from .google_adc import AdcError, adc_scopes

DEFAULT_TIMEOUT = 30.0
MAX_BODY_BYTES = 32 * 1024 * 1024  # a result this large does not belong in an event anyway


def _query(params: Any) -> dict[str, str] | None:
    """aiohttp takes str/int/float only; YAML gives bools and nulls too."""
    if not params:
        return None
    if not isinstance(params, dict):
        raise ToolError(f"http `params` must be a mapping, got {type(params).__name__}")
    return {str(k): ("true" if v is True else "false" if v is False else str(v)) for k, v in params.items()
            if v is not None}


def _body(config: dict[str, Any], method: str) -> tuple[dict[str, Any], dict[str, str] | None]:
    """aiohttp request kwargs for the body, plus query parameters taken from a GET payload."""
    if config.get("json") is not None:
        return {"json": config["json"]}, None
    if config.get("form") is not None:
        return {"data": config["form"]}, None
    for field in ("payload", "data", "body"):
        value = config.get(field)
        if value is None:
            continue
        if isinstance(value, (dict, list)):
            if method in ("GET", "DELETE", "HEAD") and isinstance(value, dict):
                return {}, _query(value)
            return {"json": value}, None
        return {"data": value if isinstance(value, (str, bytes)) else str(value)}, None
    return {}, None


def _timeout(config: dict[str, Any], ctx: ToolContext) -> float:
    raw = config.get("timeout_seconds", config.get("timeout"))
    try:
        value = float(raw) if raw is not None else DEFAULT_TIMEOUT
    except (TypeError, ValueError):
        raise ToolError(f"http `timeout` must be a number of seconds, got {raw!r}") from None
    return max(0.001, min(value, ctx.timeout_seconds))


async def _with_auth(auth: Any, headers: dict[str, str], seconds: float, ctx: ToolContext) -> dict[str, str]:
    """`headers` with the bearer an ADC `auth` gives (it replaces an Authorization the playbook wrote)."""
    try:
        scopes = adc_scopes(auth)
        if scopes is None:
            return headers
        token = await ctx.google_tokens.access_token(scopes, seconds)
    except AdcError as exc:
        raise ToolError(f"http auth `source: adc`: {exc}",
                        details={"kind": exc.kind, "retryable": exc.retryable}) from None
    return {**{k: v for k, v in headers.items() if k.lower() != "authorization"}, "Authorization": f"Bearer {token}"}


def _accepts(config: dict[str, Any], status: int) -> bool:
    accept = config.get("accept_status")
    if accept is True:
        return True
    if isinstance(accept, (list, tuple)):
        return status in {int(s) for s in accept}
    return 200 <= status < 300


async def run(config: dict[str, Any], inputs: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    url = config.get("url") or config.get("endpoint")
    if not url or not isinstance(url, str):
        raise ToolError("http tool needs `url`")
    method = str(config.get("method") or "GET").upper()
    headers = config.get("headers") or None
    if headers is not None and not isinstance(headers, dict):
        raise ToolError("http `headers` must be a mapping")
    body, payload_query = _body(config, method)
    params = {**(payload_query or {}), **(_query(config.get("params")) or {})} or None
    seconds = _timeout(config, ctx)
    headers = await _with_auth(config.get("auth"), {str(k): str(v) for k, v in (headers or {}).items()}, seconds, ctx)
    try:
        # trust_env: HTTP(S)_PROXY / NO_PROXY of the worker's environment apply, as in NoETL's worker
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds), trust_env=True) as session:
            async with session.request(method, url, headers=headers, params=params,
                                       allow_redirects=bool(config.get("follow_redirects", True)), **body) as resp:
                raw = await _read_capped(resp, f"HTTP {method} {url}")
                parsed = _parse(raw, resp.charset)
                status, resp_headers = resp.status, dict(resp.headers)
    except ToolError:
        raise
    except TimeoutError:  # asyncio.TimeoutError is TimeoutError from Python 3.11
        raise ToolError(f"HTTP {method} {url} timed out after {seconds:g}s",
                        details={"kind": "timeout", "retryable": True}) from None
    except (aiohttp.ClientError, ValueError) as exc:
        raise ToolError(f"HTTP {method} {url} failed: {type(exc).__name__}: {exc}",
                        details={"kind": "connection", "retryable": True}) from None
    if not _accepts(config, status):
        raise ToolError(f"HTTP {method} {url} answered {status}: {str(parsed)[:300]}",
                        details=status_details(status, resp_headers, parsed))
    return {"status_code": status, "headers": resp_headers, "body": parsed, "data": parsed}


def status_details(status: int, headers: dict[str, str], body: Any) -> dict[str, Any]:
    kind = ("rate_limit" if status == 429 else "auth" if status in (401, 403) else "not_found" if status == 404
            else "timeout" if status == 408 else "server_error" if status >= 500 else "client_error")
    details: dict[str, Any] = {"kind": kind, "retryable": status >= 500 or status in (408, 429), "status": status,
                               "code": status, "body": body, "headers": headers}
    retry_after = headers.get("Retry-After")
    if retry_after and retry_after.strip().isdigit():
        details["retry_after"] = int(retry_after.strip())
    return details


async def _read_capped(resp: aiohttp.ClientResponse, what: str) -> bytes:
    chunks, size = [], 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ToolError(f"{what}: response larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(raw: bytes, charset: str | None) -> Any:
    text = raw.decode(charset or "utf-8", errors="replace")
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        return text
