"""`kind: http`: `{status_code, headers, body}` (JSON body parsed); non-2xx fails the step."""

from __future__ import annotations

from typing import Any

import aiohttp

from .base import ToolContext, ToolError


async def run(config: dict[str, Any], inputs: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    url = config.get("url") or config.get("endpoint")
    if not url:
        raise ToolError("http tool needs `url`")
    method = str(config.get("method", "GET")).upper()
    body_json = config.get("json", config.get("payload") if isinstance(config.get("payload"), (dict, list)) else None)
    data = config.get("body") if config.get("body") is not None else config.get("data")
    timeout = aiohttp.ClientTimeout(total=float(config.get("timeout_seconds") or config.get("timeout") or 30))
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.request(method, url, headers=config.get("headers"), params=config.get("params"),
                                       json=body_json if data is None else None,
                                       data=data if body_json is None else None) as resp:
                raw = await resp.read()
                try:
                    parsed: Any = await resp.json(content_type=None)
                except Exception:
                    parsed = raw.decode(errors="replace")
                result = {"status_code": resp.status, "headers": dict(resp.headers), "body": parsed, "data": parsed}
    except aiohttp.ClientError as exc:
        raise ToolError(f"HTTP {method} {url} failed: {type(exc).__name__}: {exc}") from None
    except TimeoutError:
        raise ToolError(f"HTTP {method} {url} timed out after {timeout.total}s") from None
    if not 200 <= result["status_code"] < 300 and not config.get("accept_status"):
        raise ToolError(f"HTTP {method} {url} answered {result['status_code']}: {str(parsed)[:300]}")
    return result
