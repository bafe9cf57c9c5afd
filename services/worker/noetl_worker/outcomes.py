"""Reporting a command's outcome batch (`call.done` + `command.completed`, or `call.error` +
`command.failed`), and what happens when the control plane does not take it.

- A success the server refuses as such (too large, invalid: a 4xx) becomes a failure carrying
  the refusal, so the step fails with the reason instead of hanging.
- A command that came through NATS keeps an outcome that could not be posted (`Backlog`) and
  re-posts it when its nak'ed message comes back, instead of running the tool again.
- A command handed over eagerly has no message whose redelivery would carry a retry, so its
  outcome is re-posted in-process (`post_until_taken`) until taken, refused, or the worker stops
  (then its lease expires and the shard re-issues the command: at least once, as after a crash).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import OrderedDict
from typing import Callable

import msgspec

from .client import Backoff, ControlPlane, ControlPlaneError
from .wire import EagerRequest, Event, Handed
from noetl_common.vocabulary import PIPELINED, EventType

log = logging.getLogger("noetl.worker")

MAX_UNREPORTED = 1024  # outcomes kept for re-posting; bounded so a long outage cannot grow memory
# Between in-process re-posts (each post retries itself for ~4 s first). Capped low: the shard's
# claim lease runs on while it is down, so once it is back the outcome must reach it within
# seconds, not after a long backoff that lets the lease expire and the step run again.
REPOST_BACKOFF = Backoff(attempts=0, first=0.5, cap=5.0)


class Unreported(msgspec.Struct):
    """An outcome batch, as posted (and re-posted with the same key until taken)."""

    base_url: str
    execution_id: int
    events: list[Event]
    key: str


# A taken outcome is what its answer hands over (eager dispatch; usually nothing).
Accepted = Handed


class NotTaken(msgspec.Struct):
    retryable: bool
    reason: str
    outcome: Unreported  # what to re-post: a refused success has become a failure by now


async def post_outcome(plane: ControlPlane, outcome: Unreported, worker_id: str,
                       eager: EagerRequest | None) -> Accepted | NotTaken:
    try:
        handed = await plane.post_events(outcome.execution_id, outcome.events, worker_id, outcome.key, eager=eager)
    except ControlPlaneError as exc:
        if exc.retryable:
            return NotTaken(True, str(exc), outcome)
        if outcome.events[0].event_type == EventType.CALL_DONE:
            # The server refused the result itself (too large, invalid): the step fails with why.
            log.error("control plane refused the result of %s: %s", outcome.events[0].command_id, exc)
            failure = msgspec.structs.replace(outcome, events=refused(outcome.events, str(exc)),
                                              key=outcome.key + ":refused")
            return await post_outcome(plane, failure, worker_id, eager)
        return NotTaken(False, str(exc), outcome)
    return handed


async def post_until_taken(plane: ControlPlane, outcome: Unreported, worker_id: str,
                           eager: Callable[[], EagerRequest | None], stopping: asyncio.Event,
                           on_failure: Callable[[NotTaken], None], backoff: Backoff = REPOST_BACKOFF
                           ) -> Accepted | NotTaken:
    """Post (same Idempotency-Key each time) until taken or refused; after a stop, one more try
    at most. `eager` is asked again per attempt: free slots change, and a stopping worker asks
    for nothing."""
    attempt = 0
    while True:
        posted = await post_outcome(plane, outcome, worker_id, eager())
        if isinstance(posted, Accepted):
            return posted
        on_failure(posted)
        if not posted.retryable or stopping.is_set():
            return posted
        outcome = posted.outcome
        delay = repost_delay(backoff, attempt)
        attempt += 1
        log.warning("could not report outcome of %s (re-posting in %.1fs): %s",
                    outcome.events[0].command_id, delay, posted.reason)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stopping.wait(), delay)


def merged(outcomes: list[Unreported]) -> Unreported:
    """Outcomes of one execution's commands, in the order they ran, as one batch (one write on
    the shard); keyed by the first and last, which a re-post repeats."""
    if len(outcomes) == 1:
        return outcomes[0]
    first, last = outcomes[0], outcomes[-1]
    return Unreported(base_url=first.base_url, execution_id=first.execution_id,
                      events=[e for o in outcomes for e in o.events], key=f"{first.key}+{len(outcomes) - 1}:{last.key}")


def pipelined(outcome: Unreported) -> Unreported:
    """The outcome saying this worker takes a sequential loop's next iteration ahead (see the
    engine's `EngineEvent.pipelined`): set on both events, whichever the shard finishes with."""
    events = [msgspec.structs.replace(e, payload={**e.payload, PIPELINED: True}) for e in outcome.events]
    return msgspec.structs.replace(outcome, events=events)


def repost_delay(backoff: Backoff, attempt: int) -> float:
    return min(backoff.first * 2 ** min(attempt, 30), backoff.cap) * (0.8 + 0.4 * random.random())


class Backlog:
    """Outcomes of NATS-delivered commands the control plane did not take yet, by command id."""

    def __init__(self, limit: int = MAX_UNREPORTED) -> None:
        self._items: OrderedDict[int, Unreported] = OrderedDict()
        self._limit = limit

    def get(self, command_id: int) -> Unreported | None:
        return self._items.get(command_id)

    def pop(self, command_id: int) -> None:
        self._items.pop(command_id, None)

    def keep(self, command_id: int, outcome: Unreported) -> None:
        self._items[command_id] = outcome
        self._items.move_to_end(command_id)
        while len(self._items) > self._limit:
            dropped, _ = self._items.popitem(last=False)
            log.error("dropping the unreported outcome of %s (too many pending); the claim lease will "
                      "let the command run again", dropped)


def refused(events: list[Event], reason: str) -> list[Event]:
    """Turn a refused success into a failure report carrying the refusal."""
    first = events[0]
    error = f"the control plane refused this step's result: {reason}"[:2000]
    base = {"command_id": first.command_id, "worker_id": first.worker_id}
    return [msgspec.structs.replace(first, event_type=EventType.CALL_ERROR, status="FAILED",
                                    payload={**base, "error": error}),
            msgspec.structs.replace(events[-1], event_type=EventType.COMMAND_FAILED, status="FAILED",
                                    payload={**base, "error": error})]
