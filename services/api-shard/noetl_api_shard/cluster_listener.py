"""One LISTEN connection per shard to the cluster database (outside the pool), for every channel a
part of the shard follows: the shard map's epochs (map_keeper) and changes to the cluster rows the
shard caches (store.cluster_cache). A follower gets each payload, and `resync(listening)` whenever
the connection is made (anything committed while nobody listened was missed) or lost. The
connection is pinged: a half-open one would hear nothing and say nothing."""

from __future__ import annotations

import logging
from typing import AsyncIterator, Awaitable, Callable

import asyncpg
from aiohttp import web

from noetl_common.background import Backoff, Loop, LoopMetrics

log = logging.getLogger("noetl.api_shard.cluster_listener")

PING_SECONDS = 2.0
RECONNECT = Backoff(first=1.0, cap=10.0)


class Follower:
    def __init__(self, channel: str, on_payload: Callable[[str], None], resync: Callable[[bool], None]) -> None:
        self.channel, self.on_payload, self.resync = channel, on_payload, resync


class ClusterListener:
    def __init__(self, dsn: str, metrics: LoopMetrics, *, ping_seconds: float = PING_SECONDS,
                 connect: Callable[[str], Awaitable[asyncpg.Connection]] = asyncpg.connect) -> None:
        self._dsn = dsn
        self._connect = connect
        self._followers: list[Follower] = []
        self._conn: asyncpg.Connection | None = None
        self.loop = Loop("cluster-listen", self._step, metrics=metrics, interval=ping_seconds, backoff=RECONNECT,
                         logger=log)

    def follow(self, channel: str, on_payload: Callable[[str], None], resync: Callable[[bool], None]) -> None:
        """Before the loop starts."""
        self._followers.append(Follower(channel, on_payload, resync))

    async def _step(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            try:
                await self._conn.fetchval("SELECT 1", timeout=5)
                return
            except Exception:
                self._lost()
                raise
        self._lost()
        conn = await self._connect(self._dsn)
        try:
            for f in self._followers:
                await conn.add_listener(f.channel, lambda _c, _pid, _channel, payload, f=f: f.on_payload(payload))
        except BaseException:
            conn.terminate()
            raise
        conn.add_termination_listener(lambda _c: self._lost(warn=True))
        self._conn = conn
        for f in self._followers:
            f.resync(True)

    def _lost(self, warn: bool = False) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if warn:
            log.warning("cluster LISTEN connection lost; reconnecting")
        if not conn.is_closed():
            conn.terminate()
        for f in self._followers:
            f.resync(False)

    async def running(self, _app: web.Application) -> AsyncIterator[None]:
        """An aiohttp cleanup_ctx: listening while the app runs."""
        self.loop.start()
        yield
        await self.loop.close()
        self._lost()
