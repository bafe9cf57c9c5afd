"""Background loops: a step run again and again until stopped. A failed step is logged, counted
and followed by a capped, jittered exponential backoff, which the next success resets; a stop is
honoured at once during any pause, and a step already running may finish (`close(grace)`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import AsyncIterator, Awaitable, Callable

import msgspec
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

# A step returns how long to pause before the next one, or None for the loop's interval.
Step = Callable[[], Awaitable[float | None]]
Sleep = Callable[[float], Awaitable[None]]

log = logging.getLogger("noetl.background")


class Backoff(msgspec.Struct, frozen=True):
    """The pause after the n-th failure in a row: `first * factor**(n-1)`, at most `cap`, less a
    random part of up to `jitter` of it, so replicas that failed together do not retry together."""

    first: float = 0.25
    cap: float = 10.0
    factor: float = 2.0
    jitter: float = 0.2

    def delay(self, failures: int, rand: float) -> float:
        """`rand` in [0, 1): the jitter's draw."""
        base = min(self.first * self.factor ** min(max(failures - 1, 0), 64), self.cap)
        return base * (1 - self.jitter * rand)


DEFAULT_BACKOFF = Backoff()


class LoopMetrics:
    """One pair of counters for every loop of a process, on the registry the process serves."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.iterations = Counter("noetl_loop_iterations_total", "Steps run by a background loop", ["loop"],
                                  registry=registry)
        self.failures = Counter("noetl_loop_failures_total", "Steps of a background loop that failed",
                                ["loop"], registry=registry)


class Loop:
    def __init__(self, name: str, step: Step, *, metrics: LoopMetrics, interval: float = 0.0,
                 first_delay: float = 0.0, backoff: Backoff = DEFAULT_BACKOFF, logger: logging.Logger = log,
                 sleep: Sleep = asyncio.sleep, rand: Callable[[], float] = random.random) -> None:
        self.name = name
        self.interval = interval
        self.first_delay = first_delay
        self.backoff = backoff
        self.failures = 0  # in a row
        self._step = step
        self._log = logger
        self._sleep = sleep
        self._rand = rand
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Series exist (at 0) from the start, so rate() and alerts see them before the first failure.
        self._iterations = metrics.iterations.labels(name)
        self._failed = metrics.failures.labels(name)

    @property
    def stopping(self) -> asyncio.Event:
        """Set by stop(): for a step that waits on its own and should give up early too."""
        return self._stopping

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Until stopped; a cancel goes through as CancelledError."""
        await self.pause(self.first_delay)
        while not self._stopping.is_set():
            await self.pause(await self._iterate())

    async def _iterate(self) -> float:
        """One step; the pause before the next."""
        self._iterations.inc()
        try:
            pause = await self._step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failures += 1
            self._failed.inc()
            delay = self.backoff.delay(self.failures, self._rand())
            # The traceback once per run of failures: enough to find a bug, no flood during an outage.
            self._log.warning("%s failed: %s: %s; retrying in %.2fs", self.name, type(exc).__name__, exc, delay,
                              exc_info=self.failures == 1,
                              extra={"fields": {"loop": self.name, "failures": self.failures,
                                                "retry_in_seconds": round(delay, 3)}})
            return delay
        if self.failures:
            self._log.info("%s recovered after %d failure(s)", self.name, self.failures,
                           extra={"fields": {"loop": self.name, "failures": self.failures}})
            self.failures = 0
        return self.interval if pause is None else pause

    async def pause(self, seconds: float) -> None:
        """Sleep for `seconds`, or less if the loop is stopped meanwhile."""
        if seconds <= 0 or self._stopping.is_set():
            return
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        stopped = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait((sleeper, stopped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopped.cancel()

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self.run(), name=self.name)
        return self._task

    async def close(self, grace: float = 0.0) -> None:
        """Stop; a step still running gets `grace` seconds to finish, then it is cancelled."""
        self.stop()
        task = self._task
        if task is None:
            return
        if grace > 0:
            await asyncio.wait((task,), timeout=grace)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def in_background(*loops: Loop, grace: float = 0.0) -> Callable[[web.Application], AsyncIterator[None]]:
    """An aiohttp cleanup_ctx running the loops while the app runs."""

    async def running(_app: web.Application) -> AsyncIterator[None]:
        for loop in loops:
            loop.start()
        yield
        await asyncio.gather(*(loop.close(grace) for loop in loops))

    return running
