"""Commands this process issued and claims it granted, kept in memory after their commit.

NoETL's Python worker holds two consumers that both see a shared command, so every command it
takes is claimed twice (the second claim must get 409 `active_claim`), and after the claim it posts
`command.started`, which the claim already logged (a re-send). A granted claim cannot change hands
before its lease runs out — only the holder finishing the command ends it, and that commit forgets
it here — so within the lease (less a margin: the lease was stamped by the database after this
clock was read) the book answers both without the database.

A command this process issued and nobody has claimed yet is kept too (its row as written), so its
first claim needs no read: it is written optimistically, on the condition, checked inside the
statement, that the command is still ISSUED (`CommandChange.if_issued`). Past a lease, for a
command the book never saw or has let go, or when the condition fails, the database decides.

A command is announced while its transaction commits (`PromptAnnouncer`), so a worker's claim can
arrive before the commit ends: such a command is `unsettled` until then, and its claim waits
(`settled`) to find it in the book, or, if the transaction failed, not at all (404).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Callable

from ...store.writes import CommandRow
from .unit_of_work import UnitOfWork

DEFAULT_CAPACITY = 100_000
# Issued rows carry their context (tens of KB at most: large values are stored by reference), and
# wait here only until a worker claims them, milliseconds; a backlog beyond this is claimed the
# locking way. Bounds the book's memory to tens of MB.
ISSUED_CAPACITY = 1_000
MARGIN_SECONDS = 1.0
# A claim waits at most this long for the commit of its command's transaction (a commit takes
# milliseconds). Past it the database answers, as for any command the book does not know: a 404
# while still uncommitted, and the command, once committed, waits for the reaper's re-announcement
# (NOETL_COMMAND_REPUBLISH_AFTER_SECONDS), so the bound is generous.
SETTLE_SECONDS = 10.0


class Gate(asyncio.Event):
    """Set when the transaction of the commands it gates has ended; `committed` says how."""

    committed = False


class Claim:
    __slots__ = ("execution_id", "worker_id", "started_event_id", "until")

    def __init__(self, execution_id: int, worker_id: str, started_event_id: int, until: float) -> None:
        self.execution_id = execution_id
        self.worker_id = worker_id
        self.started_event_id = started_event_id
        self.until = until


class ClaimBook:
    def __init__(self, capacity: int = DEFAULT_CAPACITY, clock: Callable[[], float] = time.monotonic,
                 issued_capacity: int = ISSUED_CAPACITY) -> None:
        self.capacity = capacity
        self.issued_capacity = issued_capacity
        self.clock = clock
        self._claims: OrderedDict[int, Claim] = OrderedDict()
        self._issued: OrderedDict[int, CommandRow] = OrderedDict()
        self._unsettled: dict[int, Gate] = {}

    def unsettled(self, command_ids: list[int]) -> Gate:
        """Commands announced before their transaction ends; `settle` the returned gate after it."""
        gate = Gate()
        for command_id in command_ids:
            self._unsettled[command_id] = gate
        return gate

    def settle(self, command_ids: list[int], gate: Gate, *, committed: bool) -> None:
        for command_id in command_ids:
            if self._unsettled.get(command_id) is gate:
                del self._unsettled[command_id]
        gate.committed = committed
        gate.set()

    async def settled(self, command_id: int, timeout: float = SETTLE_SECONDS) -> str | None:
        """Returns once the transaction that issued `command_id` has ended: at once (None) if it
        has, else how it ended after the wait: committed, failed or timed_out."""
        gate = self._unsettled.get(command_id)
        if gate is None:
            return None
        try:
            await asyncio.wait_for(gate.wait(), timeout)
        except asyncio.TimeoutError:
            return "timed_out"
        return "committed" if gate.committed else "failed"

    def record(self, uow: UnitOfWork, began: float) -> None:
        """After a commit: the commands it issued for a worker to claim, the claims it granted
        (leases counted from `began`, this clock read before the transaction wrote) and the
        commands it finished."""
        for row in uow.issued_commands():
            self._issued[row.command_id] = row
        while len(self._issued) > self.issued_capacity:
            self._issued.popitem(last=False)
        for command_id, execution_id, worker_id, started_event_id, lease_seconds in uow.granted_claims():
            self._issued.pop(command_id, None)
            self._claims[command_id] = Claim(execution_id, worker_id, started_event_id,
                                             began + lease_seconds - MARGIN_SECONDS)
            self._claims.move_to_end(command_id)
        while len(self._claims) > self.capacity:
            self._claims.popitem(last=False)
        for command_id in uow.finished_commands():
            self._issued.pop(command_id, None)
            self._claims.pop(command_id, None)

    def issued(self, command_id: int) -> CommandRow | None:
        """The row of a command this process issued and has not seen claimed."""
        return self._issued.get(command_id)

    def forget(self, command_id: int) -> None:
        """The database decides this command from now on (an optimistic claim could not be used)."""
        self._issued.pop(command_id, None)

    def holder(self, command_id: int) -> Claim | None:
        """The claim on `command_id` while its lease surely runs; None when the database must say."""
        claim = self._claims.get(command_id)
        if claim is None:
            return None
        if claim.until <= self.clock():
            del self._claims[command_id]
            return None
        return claim

    def granted(self, command_id: int) -> Claim | None:
        """The claim this process granted on `command_id`, whether or not its lease still runs."""
        return self._claims.get(command_id)

    def __len__(self) -> int:
        return len(self._claims)
