"""Optimistic writes that arrive together share one statement, and so one commit (group commit).

Each optimistic transaction is already a single statement. A write goes out at once, by its own
caller, when fewer than MAX_FLUSHING statements are in flight — taking along whatever writes are
waiting, up to MAX_GROUP; otherwise it waits to be taken along (events of many executions at once
then cost a few statements, not one each). Writes of one execution never meet in a group (the
cache serialises them), so a group never touches a row twice. If a group fails (one execution
changed by another writer, one key answered before, anything else), each write is sent again
alone and gets its own answer: a group succeeds or fails exactly as its writes would one by one.
Writes known to come together (the router's relayed events) are `held` until each has reached its
flush: one statement for all of them, rather than two alone and the rest after.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Iterator

import asyncpg

from ...store import writes
from ...store.writes import Expect, WriteSet

MAX_GROUP = 64
MAX_FLUSHING = 2


class Write:
    """One optimistic write and where its outcome goes."""

    __slots__ = ("ws", "expect", "done", "statements")

    def __init__(self, ws: WriteSet, expect: Expect) -> None:
        self.ws, self.expect = ws, expect
        self.statements = 0  # sent with it: 1, or 2 when its group failed and it went again alone
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()

    def settle(self, error: BaseException | None) -> None:
        if not self.done.done():
            self.done.set_exception(error) if error is not None else self.done.set_result(None)


class GroupCommit:
    def __init__(self) -> None:
        self._queue: list[Write] = []
        self._flushing = 0
        self._held = 0

    async def flush(self, pool: asyncpg.Pool, ws: WriteSet, expect: Expect) -> int:
        """Write `ws` optimistically (raises writes.Conflict / writes.KnownBatch as flush does);
        returns how many statements carried it (for its trace span)."""
        write = Write(ws, expect)
        if self._held or self._flushing >= MAX_FLUSHING:
            self._queue.append(write)
        else:
            self._flushing += 1
            try:
                await send_group(pool, [write, *self._take(MAX_GROUP - 1)])
            finally:
                self._flushing -= 1
                self._resume(pool)
        await write.done
        return write.statements

    @contextlib.contextmanager
    def held(self, pool: asyncpg.Pool) -> Iterator[None]:
        """While held, writes wait to be taken along; on leaving, what waits goes out together."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
            if not self._held:
                self._resume(pool)

    def _take(self, n: int) -> list[Write]:
        taken, self._queue = self._queue[:n], self._queue[n:]
        return taken

    def _resume(self, pool: asyncpg.Pool) -> None:
        """Writes still waiting when a flusher finishes get one of their own."""
        if self._queue and self._flushing < MAX_FLUSHING:
            self._flushing += 1
            asyncio.create_task(self._drain(pool))

    async def _drain(self, pool: asyncpg.Pool) -> None:
        try:
            while self._queue:
                await send_group(pool, self._take(MAX_GROUP))
        finally:
            self._flushing -= 1


async def send_group(pool: asyncpg.Pool, group: list[Write]) -> None:
    """One statement for the group; if it fails, one each. Every write's `done` gets its outcome."""
    if len(group) > 1:
        ws, expect = writes.merge([(w.ws, w.expect) for w in group])
        for w in group:
            w.statements += 1
        try:
            async with pool.acquire() as conn:
                await writes.flush(conn, ws, expect)
        except Exception:  # noqa: BLE001 - each alone, below, gets its own outcome
            pass
        else:
            for w in group:
                w.settle(None)
            return
    for w in group:
        w.statements += 1
        try:
            async with pool.acquire() as conn:
                await writes.flush(conn, w.ws, w.expect)
        except Exception as exc:  # noqa: BLE001 - the writer's own outcome
            w.settle(exc)
        else:
            w.settle(None)
