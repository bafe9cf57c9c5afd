"""Slot accounting (a pull's reservation, taken back by handed-over commands) and the memory of
recent commands that keeps a replayed answer from running one twice."""

from __future__ import annotations

import asyncio

import msgspec

from noetl_common.wire.execution import EagerOffer
from noetl_worker.slots import RecentCommands, Slots


async def test_a_pull_reserves_every_free_slot_and_keeps_what_it_fetched():
    slots = Slots(4)
    assert slots.try_take()
    assert await slots.reserve() == 3
    assert slots.spare() == 3  # reserved by a waiting pull still counts as spare
    assert slots.settle(2) == 2
    assert slots.busy == 3 and slots.spare() == 1


async def test_a_handed_over_command_takes_a_slot_back_from_the_pull():
    slots = Slots(2)
    assert slots.try_take()              # the command whose outcome hands over more
    assert await slots.reserve() == 1    # the pull, waiting on JetStream
    assert slots.try_take()              # an extra: taken from the reservation
    assert not slots.try_take()          # never more than the capacity
    assert slots.settle(1) == 0          # the fetched message finds no slot (it is handed back)
    assert slots.busy == 2


async def test_take_waits_for_a_release():
    slots = Slots(1)
    assert slots.try_take()
    waiter = asyncio.create_task(slots.take())
    await asyncio.sleep(0)
    assert not waiter.done()
    slots.release()
    await asyncio.wait_for(waiter, 1)
    assert slots.busy == 1


async def test_reserve_waits_for_a_free_slot_and_close_wakes_it():
    slots = Slots(1)
    assert slots.try_take()
    pull = asyncio.create_task(slots.reserve())
    await asyncio.sleep(0)
    assert not pull.done()
    slots.release()
    assert await asyncio.wait_for(pull, 1) == 1
    slots.settle(0)
    assert slots.try_take()
    pull = asyncio.create_task(slots.reserve())
    await asyncio.sleep(0)
    slots.close()
    assert await asyncio.wait_for(pull, 1) == 0


def test_recent_commands_refuse_running_and_finished_ones():
    recent = RecentCommands(limit=2)
    assert recent.admit(1, 1)
    assert not recent.admit(1, 1) and recent.running(1)
    recent.finish(1, 1)
    assert not recent.running(1) and not recent.admit(1, 1)
    assert recent.admit(1, 2)  # a lease takeover's new attempt is new work
    recent.forget(1)
    assert recent.admit(1, 2)


def test_recent_commands_are_bounded():
    recent = RecentCommands(limit=2)
    for n in (1, 2, 3):
        recent.start(n)
        recent.finish(n, 1)
    assert recent.admit(1, 1)  # the oldest was forgotten
    assert not recent.admit(3, 1)


def test_eager_offer_is_one_the_shard_takes_whatever_the_capacity():
    """A worker with more slots than one offer may ask for (WORKER_MAX_CONCURRENT above 64) had
    every outcome batch refused (422 on eager.slots) and gave its results up."""
    for capacity in (1, 4, 64, 65, 256):
        offer = Slots(capacity).offer()
        assert offer == min(capacity + 1, 64)
        assert msgspec.convert({"slots": offer, "pool": "shared"}, EagerOffer).slots == offer
