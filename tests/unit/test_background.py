"""The background loop helper, on a real event loop with the sleep injected (nothing waits long)."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from prometheus_client import CollectorRegistry

from noetl_common.background import Backoff, Loop, LoopMetrics, in_background
from noetl_common.observability import JsonFormatter


class Script:
    """A step that fails or succeeds as told, one outcome per call; stops the loop at the end."""

    def __init__(self, outcomes: list[bool], pause: float | None = None) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.pause = pause
        self.loop: Loop | None = None

    async def __call__(self) -> float | None:
        self.calls += 1
        ok = self.outcomes.pop(0)
        if not self.outcomes:
            assert self.loop is not None
            self.loop.stop()
        if not ok:
            raise ConnectionError("down")
        return self.pause


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


def make(outcomes: list[bool], *, registry: CollectorRegistry | None = None, pause: float | None = None,
         **kwargs) -> tuple[Loop, Script, Sleeps, CollectorRegistry]:
    registry = registry or CollectorRegistry()
    script, sleeps = Script(outcomes, pause), Sleeps()
    loop = Loop("test-loop", script, metrics=LoopMetrics(registry), sleep=sleeps, rand=lambda: 0.0, **kwargs)
    script.loop = loop
    return loop, script, sleeps, registry


def counter(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value(name, {"loop": "test-loop"})


def test_backoff_grows_and_caps_and_jitter_only_shortens():
    b = Backoff(first=0.25, cap=2.0, factor=2.0, jitter=0.5)
    assert [b.delay(n, 0.0) for n in range(1, 7)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert b.delay(3, 0.999) == pytest.approx(0.5, abs=0.001)
    assert b.delay(10_000, 0.0) == 2.0  # no overflow after a very long outage


async def test_backoff_grows_caps_and_resets_after_success():
    loop, script, sleeps, _ = make([False, False, False, False, True, False, True],
                                   backoff=Backoff(first=0.1, cap=0.3), interval=0.05)
    await asyncio.wait_for(loop.run(), 1)
    assert script.calls == 7
    # 0.1, 0.2, 0.3 (cap), 0.3, then a success (interval), then the first failure's delay again.
    assert sleeps.delays == pytest.approx([0.1, 0.2, 0.3, 0.3, 0.05, 0.1])
    assert loop.failures == 0


async def test_failures_and_iterations_are_counted_per_loop_and_exist_at_zero():
    registry = CollectorRegistry()
    loop, _, _, _ = make([False, True, False, True], registry=registry)
    assert counter(registry, "noetl_loop_iterations_total") == 0
    assert counter(registry, "noetl_loop_failures_total") == 0
    await asyncio.wait_for(loop.run(), 1)
    assert counter(registry, "noetl_loop_iterations_total") == 4
    assert counter(registry, "noetl_loop_failures_total") == 2


async def test_a_step_may_choose_its_pause_and_the_first_delay_comes_first():
    loop, _, sleeps, _ = make([True, True], pause=0.01, first_delay=0.04, interval=1.0)
    await asyncio.wait_for(loop.run(), 1)
    assert sleeps.delays == pytest.approx([0.04, 0.01])


async def test_stop_is_prompt_even_in_a_long_pause():
    registry = CollectorRegistry()
    calls = []

    async def step() -> None:
        calls.append(1)
        raise RuntimeError("always")

    loop = Loop("test-loop", step, metrics=LoopMetrics(registry), backoff=Backoff(first=30.0, cap=30.0))
    task = loop.start()
    await asyncio.sleep(0.01)  # first step failed; now in a 24-30 s pause
    started = asyncio.get_running_loop().time()
    await loop.close(grace=5.0)
    assert asyncio.get_running_loop().time() - started < 0.05
    assert task.done() and not task.cancelled() and calls == [1]


async def test_close_lets_a_running_step_finish_within_the_grace_then_cancels():
    registry = CollectorRegistry()
    finished, cancelled = [], []

    async def step(seconds: float) -> None:
        try:
            await asyncio.sleep(seconds)
            finished.append(seconds)
        except asyncio.CancelledError:
            cancelled.append(seconds)
            raise

    quick = Loop("quick", lambda: step(0.02), metrics=LoopMetrics(registry))
    quick.start()
    await asyncio.sleep(0.005)
    await quick.close(grace=1.0)
    assert finished == [0.02]

    stuck = Loop("stuck", lambda: step(60), metrics=LoopMetrics(CollectorRegistry()))
    stuck.start()
    await asyncio.sleep(0.005)
    await asyncio.wait_for(stuck.close(grace=0.02), 1)
    assert cancelled == [60]


async def test_cancel_goes_through():
    async def forever() -> None:
        await asyncio.sleep(3600)

    hanging = Loop("hang", forever, metrics=LoopMetrics(CollectorRegistry()))
    task = hanging.start()
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_cleanup_ctx_adapter_starts_and_closes_the_loops():
    runs = []

    async def step() -> float:
        runs.append(1)
        return 0.005

    loop = Loop("ctx", step, metrics=LoopMetrics(CollectorRegistry()))
    ctx = in_background(loop)(object())  # type: ignore[arg-type]
    await ctx.__anext__()
    await asyncio.sleep(0.03)
    with pytest.raises(StopAsyncIteration):
        await ctx.__anext__()
    assert len(runs) >= 2 and loop.stopping.is_set()
    seen = len(runs)
    await asyncio.sleep(0.02)
    assert len(runs) == seen


async def test_failures_are_logged_as_json_with_the_loop_and_one_traceback_per_run(caplog):
    loop, _, _, _ = make([False, False, True])
    with caplog.at_level(logging.INFO, logger="noetl.background"):
        await asyncio.wait_for(loop.run(), 1)
    lines = [json.loads(JsonFormatter("svc").format(r)) for r in caplog.records]
    assert [(x["level"], x["loop"], x["failures"]) for x in lines] == [
        ("warning", "test-loop", 1), ("warning", "test-loop", 2), ("info", "test-loop", 2)]
    assert "ConnectionError: down" in lines[0]["msg"] and lines[0]["retry_in_seconds"] == 0.25
    assert "exc" in lines[0] and "exc" not in lines[1]
