"""A bound on large request bodies in flight (a worker's large result, a stored-result PUT).

Each such request holds its body in memory and, for its result-store insert, a write connection
for much longer than a step's usual write. A burst of them would take every connection of the
pool (the hot path then waits, and sheds pool_saturated) and the shard's memory. So a request
whose declared body is over the event-result limit first takes its size from a byte budget
(`NOETL_LARGE_WRITE_BYTES`) and one of a quarter of the write pool's connections; it waits for
them as long as a request waits for a connection (`pool_acquire_timeout`), then gets a 503 with
Retry-After, which workers honour (they re-post the same outcome). A body larger than the whole
budget waits until it can have the budget alone. Small requests never wait here.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Handler

from noetl_common.errors import ApiError

RETRY_AFTER_SECONDS = 2


class LargeWrites:
    """At most `budget` bytes and `slots` large bodies in flight; others wait up to `wait` s."""

    def __init__(self, *, threshold: int, budget: int, slots: int, wait: float) -> None:
        self.threshold = threshold
        self.budget = budget
        self.slots = slots
        self.wait = wait
        self.bytes = 0
        self.count = 0
        self._changed = asyncio.Condition()

    def _fits(self, need: int) -> bool:
        return self.count < self.slots and self.bytes + need <= self.budget

    @contextlib.asynccontextmanager
    async def admit(self, size: int) -> AsyncIterator[None]:
        need = min(size, self.budget)
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self._fits(need)), self.wait)
            except TimeoutError:
                raise ApiError(503, f"too many large writes in flight ({self.count}, {self.bytes} bytes); "
                                    "retry after Retry-After", "large_writes_busy",
                               headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
            self.bytes += need
            self.count += 1
        try:
            yield
        finally:
            async with self._changed:
                self.bytes -= need
                self.count -= 1
                self._changed.notify_all()


def middleware(gate: LargeWrites) -> Any:
    @web.middleware
    async def bound_large_writes(request: web.Request, handler: Handler) -> web.StreamResponse:
        size = request.content_length
        if size is None or size <= gate.threshold or request.method not in ("POST", "PUT"):
            return await handler(request)
        async with gate.admit(size):  # before the body is read
            return await handler(request)
    return bound_large_writes
