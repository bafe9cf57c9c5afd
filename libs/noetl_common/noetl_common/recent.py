"""One answer shared by every asker for a short while: `Recent(ttl).get(make)` runs `make` at most
once per `ttl` seconds, and askers who come while it runs wait for that run instead of starting
their own. For answers that are costly to build and fine slightly old (the router's fleet-wide
pool status, asked every 2 s by every NoETL worker)."""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable, Generic, TypeVar

T = TypeVar("T")


class Recent(Generic[T]):
    def __init__(self, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl_seconds
        self._clock = clock
        self._value: T | None = None
        self._at = float("-inf")
        self._running: asyncio.Future[T] | None = None

    async def get(self, make: Callable[[], Awaitable[T]]) -> T:
        if self._value is not None and self._clock() - self._at < self.ttl:
            return self._value
        if self._running is None:
            self._running = asyncio.ensure_future(self._refresh(make))
        # Shielded: one asker going away does not cancel the run the others wait for.
        return await asyncio.shield(self._running)

    async def _refresh(self, make: Callable[[], Awaitable[T]]) -> T:
        try:
            value = await make()
            self._value, self._at = value, self._clock()
            return value
        finally:
            self._running = None
