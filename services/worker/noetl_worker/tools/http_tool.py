"""`kind: http`: `{status_code, headers, body, data}` (body parsed as JSON when it is JSON; `data`
is the same value under the Python-era name). A non-2xx answer fails the step unless its status
is listed in `accept_status` (or `accept_status: true`), per semantics rule 1.

Body: `json:` is sent as JSON; the Python-era `payload:`/`data:` maps are sent as JSON too (as
query parameters on GET/DELETE, which is what NoETL did with them); a string `body:`/`data:` is
sent as is; `form:` is form-encoded.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from .base import ToolContext, ToolError

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
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds)) as session:
            async with session.request(method, url, headers={str(k): str(v) for k, v in (headers or {}).items()},
                                       params=params, allow_redirects=bool(config.get("follow_redirects", True)),
                                       **body) as resp:
                raw = await _read_capped(resp, f"HTTP {method} {url}")
                parsed = _parse(raw, resp.charset)
                status, resp_headers = resp.status, dict(resp.headers)
    except ToolError:
        raise
    except TimeoutError:  # asyncio.TimeoutError is TimeoutError from Python 3.11
        raise ToolError(f"HTTP {method} {url} timed out after {seconds:g}s") from None
    except (aiohttp.ClientError, ValueError) as exc:
        raise ToolError(f"HTTP {method} {url} failed: {type(exc).__name__}: {exc}") from None
    if not _accepts(config, status):
        raise ToolError(f"HTTP {method} {url} answered {status}: {str(parsed)[:300]}")
    return {"status_code": status, "headers": resp_headers, "body": parsed, "data": parsed}


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
