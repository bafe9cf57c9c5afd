"""One JSON request with every failure turned into an OpsError that names what was asked of whom."""

from __future__ import annotations

from typing import Any, TypeVar

import aiohttp
import msgspec

from .errors import OpsError

T = TypeVar("T")

TOKEN_REFUSED = "refused the internal token"


async def call_json(session: aiohttp.ClientSession, method: str, url: str, answer: type[T], *, what: str,
                    body: Any = None, headers: dict[str, str] | None = None,
                    timeout: aiohttp.ClientTimeout | None = None) -> tuple[T, dict[str, str]]:
    data = msgspec.json.encode(body) if body is not None else None
    hdrs = {**(headers or {}), **({"Content-Type": "application/json"} if data is not None else {})}
    try:
        request = session.request(method, url, data=data, headers=hdrs, timeout=timeout) if timeout \
            else session.request(method, url, data=data, headers=hdrs)
        async with request as resp:
            raw = await resp.read()
            if resp.status in (401, 403):
                raise OpsError(f"{what}: {url} {TOKEN_REFUSED} ({resp.status}); check NOETL_INTERNAL_API_TOKEN")
            if resp.status == 404:
                raise OpsError(f"{what}: {url} answered 404 - no such route here (a fleet older than "
                               "online scaling, or not the router?)")
            if resp.status >= 300:
                raise OpsError(f"{what}: {url} answered {resp.status}: {_error_text(raw)}")
            try:
                return msgspec.json.decode(raw, type=answer), dict(resp.headers)
            except msgspec.DecodeError as exc:
                raise OpsError(f"{what}: {url} answered something unexpected: {exc}") from None
    except aiohttp.ClientConnectorError as exc:
        raise OpsError(f"{what}: cannot reach {url} ({exc.os_error or exc})") from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise OpsError(f"{what}: {url} failed: {type(exc).__name__} {exc}".rstrip()) from None


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _error_text(raw: bytes) -> str:
    try:
        doc = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return raw.decode(errors="replace")[:200] or "(empty body)"
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        return doc["error"]
    return raw.decode(errors="replace")[:200]
