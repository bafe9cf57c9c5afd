"""Talking to shards: one request with connection-failure retries, health accounting and
metrics. It returns the shard's response unread so callers can stream it."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Mapping

import aiohttp
from multidict import CIMultiDict

from noetl_common.discovery import ShardDirectory
from noetl_common.trust import TRUST_HEADER

from .health import HealthBoard
from .metrics import RouterMetrics

# Retried on connection failure: repeating them cannot apply a change twice.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
HOP_BY_HOP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer", "Trailers",
    "Transfer-Encoding", "Upgrade", "Proxy-Connection"))


class ShardUnavailable(Exception):
    """The shard cannot be reached (or is known to be down); the message names it (HTTP 503)."""

    def __init__(self, shard: int, reason: str, *, sent: bool = False) -> None:
        super().__init__(f"shard {shard} is unavailable: {reason}")
        self.shard = shard
        self.reason = reason
        self.sent = sent  # False: the request never reached the shard, so another shard may take it


_TRUST = TRUST_HEADER.lower()


def forwardable(headers: Mapping[str, str], *, drop: frozenset[str] = frozenset()) -> CIMultiDict[str]:
    """Copy headers minus hop-by-hop ones (and any named in Connection) and `drop`. The trust
    marker is never copied: only the router sets it (forward.upstream_headers)."""
    named = {t.strip().lower() for v in _all(headers, "Connection") for t in v.split(",")}
    named.add(_TRUST)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in HOP_BY_HOP or lowered in named or lowered in drop:
            continue
        out.add(name, value)
    return out


def _all(headers: Mapping[str, str], name: str) -> list[str]:
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return list(getall(name, []))
    value = headers.get(name)
    return [value] if value else []


class Upstreams:
    def __init__(self, directory: ShardDirectory, session: aiohttp.ClientSession, board: HealthBoard,
                 metrics: RouterMetrics, *, attempts: int, backoff_seconds: float,
                 probe_timeout_seconds: float = 2.0) -> None:
        self.directory = directory
        self.session = session
        self.board = board
        self.metrics = metrics
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.probe_timeout = aiohttp.ClientTimeout(total=probe_timeout_seconds)

    def __len__(self) -> int:
        return self.directory.slots()

    def check_known(self, shard: int) -> str:
        url = self.directory.url(shard)
        if url is None:
            raise ShardUnavailable(shard, f"no URL is known for it (not in NOETL_SHARD_URLS nor recorded in the shard "
                                          f"map; the router knows shards {self.directory.indexes()})")
        return url

    async def request(self, shard: int, method: str, path_qs: str, *, headers: Mapping[str, str],
                      body: Any = None, retry: bool | None = None, skip_unhealthy: bool = True,
                      timeout: aiohttp.ClientTimeout | None = None) -> aiohttp.ClientResponse:
        """Send one request; retried (same shard, backoff doubling) on connection failure only
        when idempotent and the body is replayable. The caller must release the response."""
        base_url = self.check_known(shard)
        if skip_unhealthy and not self.board.is_healthy(shard):
            self.metrics.error(shard, "unavailable")
            raise ShardUnavailable(shard, f"marked unhealthy ({self.board.shards[shard].last_error or 'probe failed'})")
        if retry is None:
            retry = method in IDEMPOTENT and not _is_stream(body)
        tries = self.attempts if retry else 1
        delay = self.backoff_seconds
        url = base_url + path_qs
        last = ""
        sent = False
        for attempt in range(tries):
            started = time.perf_counter()
            try:
                if timeout is not None:
                    response = await self.session.request(method, url, headers=headers, data=body,
                                                          allow_redirects=False, timeout=timeout)
                else:
                    response = await self.session.request(method, url, headers=headers, data=body,
                                                          allow_redirects=False)
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
                kind = "timeout" if isinstance(exc, asyncio.TimeoutError) else "connect"
                last = f"{type(exc).__name__}: {exc}"[:200]
                # Only a failed connect proves nothing was delivered.
                sent = sent or not isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError))
                self.metrics.error(shard, kind)
                self.board.failure(shard, last)
                if attempt + 1 < tries:
                    await asyncio.sleep(delay)
                    delay *= 2
                continue
            self.metrics.observe(shard, method, response.status, time.perf_counter() - started)
            self.board.success(shard)
            return response
        raise ShardUnavailable(shard, last, sent=sent)

    async def probe(self, shard: int) -> None:
        """GET /readyz; success or failure is recorded on the board."""
        base_url = self.directory.url(shard)
        if base_url is None:
            return
        try:
            async with self.session.get(base_url + "/readyz", timeout=self.probe_timeout) as resp:
                await resp.read()
                ok = resp.status == 200
                reason = f"/readyz answered {resp.status}"
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            ok, reason = False, f"{type(exc).__name__}: {exc}"[:200]
        if ok:
            self.board.success(shard)
        else:
            self.board.failure(shard, reason)


def _is_stream(body: Any) -> bool:
    return body is not None and not isinstance(body, (bytes, bytearray, str))
