"""Threads for python steps: long-lived, so a step does not pay for starting a thread, and the
event loop is never blocked waiting for one to come up (`Thread.start` waits until the new thread
runs, which on a busy machine is the loop's time lost). A step abandoned by its timeout or a
cancel is interrupted inside its thread with an asynchronous exception — while, and only while,
it runs: a guard lock orders "it runs" against "interrupt it", and any interrupt still pending
when the step ends is cleared before the thread takes the next one. A thread stuck in a C call
that ignores the interrupt is simply never reused."""

from __future__ import annotations

import asyncio
import ctypes
import threading
from typing import Any, Callable


class StepAbandoned(BaseException):
    """Raised inside a python step's thread when nobody waits for it any more. A BaseException, so
    the step's own `except Exception` cannot swallow it."""


def _set_async_exc(ident: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc) if exc else None)


class _Job:
    __slots__ = ("fn", "args", "loop", "future", "guard", "running", "ident")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], loop: asyncio.AbstractEventLoop,
                 future: asyncio.Future) -> None:
        self.fn, self.args, self.loop, self.future = fn, args, loop, future
        self.guard = threading.Lock()
        self.running = False
        self.ident = 0

    def interrupt(self) -> None:
        with self.guard:
            if self.running:
                _set_async_exc(self.ident, StepAbandoned)


class StepThreads:
    def __init__(self, keep_idle: int = 8) -> None:
        self.keep_idle = keep_idle
        self._lock = threading.Lock()
        self._idle: list[_StepThread] = []

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args) on a step thread; cancelling the await interrupts it."""
        loop = asyncio.get_running_loop()
        job = _Job(fn, args, loop, loop.create_future())
        with self._lock:
            thread = self._idle.pop() if self._idle else None
        if thread is None:
            thread = _StepThread(self)
        thread.give(job)
        try:
            return await job.future
        except asyncio.CancelledError:
            job.interrupt()
            raise

    def _idle_again(self, thread: "_StepThread") -> bool:
        with self._lock:
            if len(self._idle) >= self.keep_idle:
                return False
            self._idle.append(thread)
            return True


class _StepThread:
    def __init__(self, pool: StepThreads) -> None:
        self.pool = pool
        self._job: _Job | None = None
        self._ready = threading.Semaphore(0)
        threading.Thread(target=self._main, name="python-step", daemon=True).start()

    def give(self, job: _Job) -> None:
        self._job = job
        self._ready.release()

    def _main(self) -> None:
        ident = threading.get_ident()
        while True:
            self._ready.acquire()
            job = self._job
            assert job is not None
            result: Any = None
            error: BaseException | None = None
            try:
                with job.guard:
                    job.running, job.ident = True, ident
                try:
                    result = job.fn(*job.args)
                except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                    error = exc
                self._end(job, ident)
            except StepAbandoned:  # the interrupt landed after the step's own code: nobody waits
                self._end(job, ident)
            # Idle again before the answer goes out, so the step that follows finds this thread.
            reused = self.pool._idle_again(self)
            try:
                job.loop.call_soon_threadsafe(_deliver, job.future, result, error)
            except RuntimeError:  # the loop is closed: nobody waits
                pass
            if not reused:
                return

    @staticmethod
    def _end(job: _Job, ident: int) -> None:
        while True:
            try:
                with job.guard:
                    job.running = False
                    _set_async_exc(ident, None)  # an interrupt requested before this point must not land later
                return
            except StepAbandoned:
                continue  # it landed inside the guard: the lock is released; mark and clear again


def _deliver(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if not future.done():
        future.set_exception(error) if error is not None else future.set_result(result)
