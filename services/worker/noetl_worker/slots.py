"""How many commands the worker runs at once, and which ones it runs or ran lately."""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from noetl_common.wire.execution import MAX_EAGER_SLOTS

RECENT_LIMIT = 4096  # finished commands remembered; a replayed answer comes within seconds, not hours


class Slots:
    """At most `capacity` commands hold a slot at any moment.

    A pull reserves every free slot while it long-polls JetStream, so one fetch can take a burst
    of notifications. A command handed over eagerly may take a slot back from that reservation
    at once (the pull then keeps fewer of what it fetched and hands the rest back to JetStream):
    the long poll never delays eager work, and the total never exceeds the capacity. One pull at
    a time (the worker has a single pull loop)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._busy = 0       # held by commands
        self._reserved = 0   # held by the pending fetch
        self._closed = False
        self._changed = asyncio.Event()

    @property
    def busy(self) -> int:
        return self._busy

    def spare(self) -> int:
        """Slots no command holds: free ones and those a waiting pull could give back."""
        return self.capacity - self._busy

    def offer(self) -> int:
        """What an outcome's eager offer asks for: the finishing command's slot plus the spare
        ones, at most what the shard takes in one offer (a worker with more slots than that
        would otherwise have every outcome refused with a 422)."""
        return min(MAX_EAGER_SLOTS, 1 + self.spare())

    def _free(self) -> int:
        return self.capacity - self._busy - self._reserved

    def close(self) -> None:
        """No more pulls (the worker is stopping); a pull waiting for a slot gets 0."""
        self._closed = True
        self._changed.set()

    async def _wait_change(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    async def reserve(self) -> int:
        """Wait for a free slot, then reserve every free one for one fetch; 0 once closed."""
        while not self._closed and self._free() == 0:
            await self._wait_change()
        if self._closed:
            return 0
        self._reserved = self._free()
        return self._reserved

    def settle(self, fetched: int) -> int:
        """The fetch returned: its messages take what is left of the reservation (returned: how
        many got a slot); the rest of the reservation is free again."""
        kept = min(fetched, self._reserved)
        self._busy += kept
        self._reserved = 0
        self._changed.set()
        return kept

    def try_take(self) -> bool:
        if self._busy >= self.capacity:
            return False
        if self._free() == 0:
            self._reserved -= 1  # taken back from the waiting pull
        self._busy += 1
        return True

    async def take(self) -> None:
        while not self.try_take():
            await self._wait_change()

    def release(self) -> None:
        self._busy -= 1
        self._changed.set()


class RecentCommands:
    """Commands running here now, and (command id, attempt) of those finished lately. A replayed
    outcome answer (same Idempotency-Key) hands over the same commands again; this is how the
    worker knows not to run them twice. A lease takeover re-issues a command as attempt n+1,
    which is new work, hence the attempt in the finished key."""

    def __init__(self, limit: int = RECENT_LIMIT) -> None:
        self._running: set[int] = set()
        self._finished: OrderedDict[tuple[int, int], None] = OrderedDict()
        self._limit = limit

    def running(self, command_id: int) -> bool:
        return command_id in self._running

    def admit(self, command_id: int, attempt: int) -> bool:
        """Mark as running here unless it runs or ran already (then False)."""
        if command_id in self._running or (command_id, attempt) in self._finished:
            return False
        self._running.add(command_id)
        return True

    def ran(self, command_id: int, attempt: int) -> bool:
        """This attempt of the command finished here lately (its outcome may still be on its way)."""
        return (command_id, attempt) in self._finished

    def start(self, command_id: int) -> None:
        """A command whose claim the control plane just granted: running, whatever came before."""
        self._running.add(command_id)

    def forget(self, command_id: int) -> None:
        """It did not run after all (e.g. its start could not be reported; the claim is retried)."""
        self._running.discard(command_id)

    def finish(self, command_id: int, attempt: int) -> None:
        self._running.discard(command_id)
        self._finished[(command_id, attempt)] = None
        self._finished.move_to_end((command_id, attempt))
        while len(self._finished) > self._limit:
            self._finished.popitem(last=False)
