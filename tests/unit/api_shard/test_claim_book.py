"""The claims a shard granted, answered from memory only while their lease surely runs."""

import asyncio

from noetl_api_shard.execution.write.claim_book import MARGIN_SECONDS, ClaimBook
from noetl_api_shard.execution.write.claiming import claim_events
from noetl_api_shard.execution.write.unit_of_work import UnitOfWork
from noetl_api_shard.store.writes import CommandChange, CommandRow


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def ids():
    n = iter(range(1000, 10**6))
    return lambda: next(n)


COMMAND = {"command_id": 7, "execution_id": 1, "step": "s", "tool_kind": "python", "catalog_id": 3, "iteration": None}


def claimed(uow: UnitOfWork, command_id: int = 7, lease: float = 60.0) -> int:
    """A claim as the claim route records it; returns its command.started event id."""
    uow.change_command(CommandChange(command_id=command_id, status="RUNNING", worker_id="w", attempt=1,
                                     lease_seconds=lease, claimed=True, started=True))
    events = claim_events(uow.mint, {**COMMAND, "command_id": command_id}, "w", 1)
    uow.append(*events)
    return events[1].event_id


def test_a_claim_is_answered_until_its_lease_less_the_margin_then_the_database_decides():
    clock, uow = Clock(), UnitOfWork(0, ids())
    book = ClaimBook(clock=clock)
    started = claimed(uow)
    book.record(uow, began=clock())
    clock.now += 1.0  # the commit came back a second later: the lease counts from before the write
    held = book.holder(7)
    assert held is not None and (held.execution_id, held.worker_id, held.started_event_id) == (1, "w", started)
    clock.now = 100.0 + 60.0 - MARGIN_SECONDS - 0.01
    assert book.holder(7) is not None
    clock.now += 0.02
    assert book.holder(7) is None and len(book) == 0


def test_a_finished_command_is_forgotten_and_progress_is_no_claim():
    clock = Clock()
    book = ClaimBook(clock=clock)
    uow = UnitOfWork(0, ids())
    claimed(uow)
    book.record(uow, began=clock())
    done = UnitOfWork(0, ids())
    done.change_command(CommandChange(command_id=7, status="COMPLETED", completed=True))
    book.record(done, began=clock())
    assert book.holder(7) is None
    # A worker's own command.started on a command it holds extends the lease; it grants nothing.
    progress = UnitOfWork(0, ids())
    progress.change_command(CommandChange(command_id=8, status="RUNNING", lease_seconds=60.0, started=True))
    progress.append(claim_events(progress.mint, {**COMMAND, "command_id": 8}, "w", 1)[1])
    book.record(progress, began=clock())
    assert book.holder(8) is None


def test_an_eager_hand_over_is_a_claim_and_the_book_stays_within_capacity():
    clock = Clock()
    book = ClaimBook(capacity=2, clock=clock)
    uow = UnitOfWork(0, ids())
    for command_id in (1, 2, 3):
        uow.new_command(CommandRow(command_id=command_id, execution_id=1, catalog_id=3, step="s", tool_kind="python",
                                   pool="shared", iteration=None, context={}, status="RUNNING", worker_id="w",
                                   lease_seconds=60.0, started=True))
        uow.append(*claim_events(uow.mint, {**COMMAND, "command_id": command_id}, "w", 1, {"eager": True}))
    book.record(uow, began=clock())
    assert [book.holder(c) is not None for c in (1, 2, 3)] == [False, True, True] and len(book) == 2


def issued_row(command_id: int, **changes) -> CommandRow:
    return CommandRow(command_id=command_id, execution_id=1, catalog_id=3, step="s", tool_kind="python",
                      pool="shared", iteration=None, context={"input": {"n": command_id}}, **changes)


def test_an_issued_command_is_kept_until_claimed_or_finished_and_a_handed_over_one_never():
    clock = Clock()
    book = ClaimBook(clock=clock, issued_capacity=2)
    uow = UnitOfWork(0, ids())
    for command_id in (1, 2, 3):
        uow.new_command(issued_row(command_id))
    uow.new_command(issued_row(4, status="RUNNING", worker_id="w", lease_seconds=60.0, started=True))
    book.record(uow, began=clock())
    assert [book.issued(c) is not None for c in (1, 2, 3, 4)] == [False, True, True, False]
    row = book.issued(2)
    assert row is not None and row.context == {"input": {"n": 2}}
    claim = UnitOfWork(0, ids())
    claimed(claim, command_id=2)
    book.record(claim, began=clock())
    assert book.issued(2) is None and book.holder(2) is not None
    done = UnitOfWork(0, ids())
    done.change_command(CommandChange(command_id=3, status="FAILED", completed=True))
    book.record(done, began=clock())
    assert book.issued(3) is None


def test_a_command_the_database_must_decide_is_forgotten():
    book = ClaimBook(clock=Clock())
    uow = UnitOfWork(0, ids())
    uow.new_command(issued_row(5))
    book.record(uow, began=0.0)
    book.forget(5)
    assert book.issued(5) is None


async def test_a_claim_of_a_command_announced_before_its_commit_waits_until_the_transaction_ends():
    book = ClaimBook()
    gate = book.unsettled([7, 8])
    waiting = asyncio.create_task(book.settled(7))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    assert await asyncio.wait_for(book.settled(9), 0.1) is None  # not announced early: no wait at all
    book.settle([7, 8], gate, committed=True)
    assert await asyncio.wait_for(waiting, 0.1) == "committed"
    assert await asyncio.wait_for(book.settled(8), 0.1) is None  # settled: forgotten, no wait


async def test_a_claim_learns_that_its_commands_transaction_failed():
    book = ClaimBook()
    gate = book.unsettled([7])
    waiting = asyncio.create_task(book.settled(7))
    await asyncio.sleep(0.01)
    book.settle([7], gate, committed=False)
    assert await asyncio.wait_for(waiting, 0.1) == "failed"


async def test_a_claim_waits_at_most_its_bound_for_a_transaction_that_never_ends():
    book = ClaimBook()
    book.unsettled([7])
    assert await asyncio.wait_for(book.settled(7, timeout=0.05), 1.0) == "timed_out"  # the database then answers


async def test_a_later_announcement_of_the_same_command_keeps_its_own_gate():
    # A transaction redone under the lock announces again: the first one's end must not drop the second's gate.
    book = ClaimBook()
    first = book.unsettled([7])
    second = book.unsettled([7])
    book.settle([7], first, committed=False)
    waiting = asyncio.create_task(book.settled(7))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    book.settle([7], second, committed=True)
    assert await asyncio.wait_for(waiting, 0.1) == "committed"
