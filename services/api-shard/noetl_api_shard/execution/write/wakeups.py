"""Who to wake after a commit, in this process: outbox claimers (long-polling publishers) and
followers of an execution's live events (SSE). Writers of a shard's data are this process, so
no database NOTIFY is needed; waiters also re-check on a timer, which covers anything else."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Iterable, Iterator

# Mirror-only rows (events for the projector) are not urgent: claimers are woken once per this
# interval at most, so a steady stream of steps is relayed in batches instead of one by one.
LAZY_OUTBOX_SECONDS = 0.1


class Signal:
    """Broadcast 'something happened' to every current waiter. A waiter takes a ticket before it
    looks (queries), then waits on that ticket: a set() in between is not missed."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    def ticket(self) -> asyncio.Event:
        return self._event

    @staticmethod
    async def wait(ticket: asyncio.Event, seconds: float) -> bool:
        """True when woken, False on timeout."""
        try:
            await asyncio.wait_for(ticket.wait(), seconds)
            return True
        except asyncio.TimeoutError:
            return False


class Wakeups:
    def __init__(self) -> None:
        self.outbox = Signal()
        self._lazy: asyncio.TimerHandle | None = None
        self._followers: dict[int, tuple[Signal, int]] = {}

    def outbox_written(self, *, urgent: bool) -> None:
        if urgent:
            if self._lazy is not None:
                self._lazy.cancel()
                self._lazy = None
            self.outbox.set()
        elif self._lazy is None:
            self._lazy = asyncio.get_running_loop().call_later(LAZY_OUTBOX_SECONDS, self._lazy_wake)

    def _lazy_wake(self) -> None:
        self._lazy = None
        self.outbox.set()

    def events_committed(self, execution_ids: Iterable[int]) -> None:
        for execution_id in execution_ids:
            entry = self._followers.get(execution_id)
            if entry is not None:
                entry[0].set()

    @contextlib.contextmanager
    def following(self, execution_id: int) -> Iterator[Signal]:
        """The signal of one execution's new events, shared by its followers while any follow."""
        signal, count = self._followers.get(execution_id, (Signal(), 0))
        self._followers[execution_id] = (signal, count + 1)
        try:
            yield signal
        finally:
            signal, count = self._followers[execution_id]
            if count <= 1:
                del self._followers[execution_id]
            else:
                self._followers[execution_id] = (signal, count - 1)
