"""Claims this process granted whose lease still runs, kept in memory after their commit.

NoETL's Python worker holds two consumers that both see a shared command, so every command it
takes is claimed twice (the second claim must get 409 `active_claim`), and after the claim it posts
`command.started`, which the claim already logged (a re-send). Both used to take the execution's row
lock and read the command back. A granted claim cannot change hands before its lease runs out —
only the holder finishing the command ends it, and that commit forgets it here — so within the
lease (less a margin: the lease was stamped by the database after this clock was read) the book
answers both without the database. Past it, or for a command it never saw, the database decides.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable

from .unit_of_work import UnitOfWork

DEFAULT_CAPACITY = 100_000
MARGIN_SECONDS = 1.0


class Claim:
    __slots__ = ("execution_id", "worker_id", "started_event_id", "until")

    def __init__(self, execution_id: int, worker_id: str, started_event_id: int, until: float) -> None:
        self.execution_id = execution_id
        self.worker_id = worker_id
        self.started_event_id = started_event_id
        self.until = until


class ClaimBook:
    def __init__(self, capacity: int = DEFAULT_CAPACITY, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = capacity
        self.clock = clock
        self._claims: OrderedDict[int, Claim] = OrderedDict()

    def record(self, uow: UnitOfWork, began: float) -> None:
        """After a commit: the claims it granted (leases counted from `began`, this clock read before
        the transaction wrote) and the commands it finished."""
        for command_id, execution_id, worker_id, started_event_id, lease_seconds in uow.granted_claims():
            self._claims[command_id] = Claim(execution_id, worker_id, started_event_id,
                                             began + lease_seconds - MARGIN_SECONDS)
            self._claims.move_to_end(command_id)
        while len(self._claims) > self.capacity:
            self._claims.popitem(last=False)
        for command_id in uow.finished_commands():
            self._claims.pop(command_id, None)

    def holder(self, command_id: int) -> Claim | None:
        """The claim on `command_id` while its lease surely runs; None when the database must say."""
        claim = self._claims.get(command_id)
        if claim is None:
            return None
        if claim.until <= self.clock():
            del self._claims[command_id]
            return None
        return claim

    def __len__(self) -> int:
        return len(self._claims)
