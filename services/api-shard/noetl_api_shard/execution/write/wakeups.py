"""Who to wake after a commit, in this process: outbox claimers (long-polling publishers) and
followers of an execution's live events (SSE). Writers of a shard's data are this process, so
no database NOTIFY is needed; waiters also re-check on a timer, which covers anything else."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Iterable, Iterator

# Mirror-only rows (events for the projector) are not urgent: claimers are woken once per this
# interval at most, and a claim that comes back sooner than that after one that read rows waits
# out the rest (`claim_pause`), so a steady stream of steps is relayed in batches instead of one
# by one — a relay that always finds new rows would otherwise claim as fast as it can publish.
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
        self._urgent = False           # an urgent row was written since the last claim read
        self._read_at = float("-inf")  # when the last claim that found rows read them
        self._backlog = False          # that claim found as many rows as it could take

    def outbox_written(self, *, urgent: bool) -> None:
        if urgent:
            self._urgent = True
            if self._lazy is not None:
                self._lazy.cancel()
                self._lazy = None
            self.outbox.set()
        elif self._lazy is None:
            self._lazy = asyncio.get_running_loop().call_later(LAZY_OUTBOX_SECONDS, self._lazy_wake)

    def _lazy_wake(self) -> None:
        self._lazy = None
        self.outbox.set()

    def claim_pause(self, now: float) -> float:
        """How long a claim arriving at `now` should wait (on `outbox`, which an urgent write
        sets) before it reads: 0 after an urgent write or while a backlog drains."""
        if self._urgent or self._backlog:
            return 0.0
        return max(0.0, self._read_at + LAZY_OUTBOX_SECONDS - now)

    def claim_reading(self) -> None:
        """A claim is about to read: urgent rows written so far are in what it reads."""
        self._urgent = False

    def claim_read(self, now: float, *, found: int, limit: int) -> None:
        if found:
            self._read_at = now
            self._backlog = found >= limit

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
