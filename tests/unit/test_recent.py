"""Recent: one run of a costly answer serves every asker for its ttl, and concurrent askers share a run."""

from __future__ import annotations

import asyncio

from noetl_common.recent import Recent


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_one_run_serves_every_asker_within_the_ttl():
    clock, runs = Clock(), []

    async def make() -> int:
        runs.append(clock.now)
        return len(runs)

    recent: Recent[int] = Recent(1.0, clock)
    assert [await recent.get(make) for _ in range(50)] == [1] * 50
    clock.now = 1.5
    assert await recent.get(make) == 2 and runs == [0.0, 1.5]


async def test_concurrent_askers_share_one_run_and_a_gone_asker_does_not_cancel_it():
    release, runs = asyncio.Event(), []

    async def make() -> str:
        runs.append(1)
        await release.wait()
        return "answer"

    recent: Recent[str] = Recent(0.0)  # no reuse after the run: only sharing while it runs
    askers = [asyncio.ensure_future(recent.get(make)) for _ in range(20)]
    await asyncio.sleep(0)
    askers[0].cancel()
    release.set()
    answers = await asyncio.gather(*askers[1:])
    assert answers == ["answer"] * 19 and runs == [1]
    assert await recent.get(make) == "answer" and runs == [1, 1]  # ttl 0: the next asker runs it again


async def test_a_failed_run_is_not_kept():
    calls = []

    async def make() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("shard down")
        return 7

    recent: Recent[int] = Recent(60.0)
    try:
        await recent.get(make)
    except RuntimeError:
        pass
    assert await recent.get(make) == 7
