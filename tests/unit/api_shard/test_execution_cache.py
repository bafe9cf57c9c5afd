"""The shard's execution cache: version-checked entries, and the holds that serialise one
execution's transactions without ever making a locking transaction wait for an optimistic one."""

from __future__ import annotations

import asyncio

from noetl_api_shard.execution.write.execution_cache import ExecutionCache, Loaded
from noetl_common.engine import ExecutionData, State


def loaded(execution_id: int, version: int) -> Loaded:
    return Loaded(execution_id=execution_id, catalog_id=1, status="RUNNING", path="p", parent_execution_id=None,
                  parent_command_id=None, state=State(execution_id=execution_id, catalog_id=1, workload={}),
                  data=ExecutionData(), version=version)


async def test_an_optimistic_holder_makes_the_next_one_wait_until_it_puts_the_entry_back():
    cache = ExecutionCache()
    cache.hold_new(7)
    cache.release(7, loaded(7, 1))
    first = await cache.acquire(7)
    assert first is not None and first.version == 1
    second = asyncio.create_task(cache.acquire(7))
    await asyncio.sleep(0.01)
    assert not second.done()  # serialised behind the first
    first.version = 2
    cache.release(7, first)
    assert (await second) is first


async def test_a_locking_transaction_uses_an_entry_only_at_the_row_version():
    cache = ExecutionCache()
    cache.hold_new(7)
    cache.release(7, loaded(7, 3))
    entry, held = await cache.take(7, 4)  # the row moved on: the entry is stale
    assert entry is None and held
    cache.release(7, None)
    cache.hold_new(7)
    cache.release(7, loaded(7, 4))
    entry, held = await cache.take(7, 4)
    assert entry is not None and entry.version == 4 and held


async def test_a_locking_transaction_never_waits_for_an_optimistic_holder():
    cache = ExecutionCache()
    cache.hold_new(7)
    cache.release(7, loaded(7, 1))
    await cache.acquire(7)  # an optimistic transaction holds it (its write may wait for our row lock)
    entry, held = await asyncio.wait_for(cache.take(7, 1), 1)
    assert entry is None and not held  # read the row instead; the optimistic write will not pass


async def test_finished_or_failed_transactions_leave_no_entry_and_capacity_is_bounded():
    cache = ExecutionCache(capacity=2)
    for i in range(3):
        cache.hold_new(i)
        cache.release(i, loaded(i, 1))
    assert len(cache) == 2 and await cache.acquire(0) is None  # the oldest went
    cache.release(0, None)  # a failed transaction puts nothing back
    assert await cache.acquire(0) is None
