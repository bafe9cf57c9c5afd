"""Python steps run on long-lived step threads: reused, interruptible while (and only while) a
step runs, and never left with an interrupt that lands in the next step."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from noetl_worker.tools.step_threads import StepAbandoned, StepThreads


async def test_sequential_steps_reuse_one_thread_and_concurrent_ones_get_their_own():
    pool = StepThreads(keep_idle=4)
    idents = [await pool.run(threading.get_ident) for _ in range(5)]
    assert len(set(idents)) == 1 and idents[0] != threading.get_ident()
    barrier = threading.Barrier(3, timeout=5)

    def meet() -> int:
        barrier.wait()
        return threading.get_ident()

    assert len(set(await asyncio.gather(*(pool.run(meet) for _ in range(3))))) == 3


async def test_an_abandoned_step_is_interrupted_and_its_thread_serves_the_next_step():
    pool = StepThreads(keep_idle=1)
    stopped = threading.Event()

    def spin() -> None:
        try:
            while True:
                time.sleep(0.001)
        except StepAbandoned:
            stopped.set()
            raise

    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(pool.run(spin), 0.1)
    assert await asyncio.to_thread(stopped.wait, 5), "the abandoned step kept running"
    # The same (only) thread runs the next steps, undisturbed by any interrupt left over.
    for _ in range(50):
        assert await pool.run(lambda: sum(range(1000))) == 499500


async def test_errors_come_back_to_the_awaiting_step():
    def boom() -> None:
        raise ValueError("inside the step")

    with pytest.raises(ValueError, match="inside the step"):
        await StepThreads().run(boom)
