"""Single `POST /api/events` requests for one shard, sent on together while that shard is busy.

While a shard has no request of this relay in flight, an event goes as it came, alone; while it
has one, events wait for it to come back and then go in one request to the shard's
`/api/internal/events/relay` (at most MAX_RELAYED_EVENTS), each answered as it would have been
alone. An idle fleet adds no wait; a busy one pays one HTTP exchange per batch instead of per
event, on the router and on the shard, and the shard writes the batch's events in one group
commit. A flight out longer than STRAGGLER_SECONDS stops holding the lane (up to MAX_FLIGHTS at
once), so one slow event delays the events behind it by that much at most. A relayed event the
shard answers 421 (the map moved) is sent again alone, through the path that refreshes the map."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import aiohttp
import msgspec
from aiohttp import web

from noetl_common import tracing
from noetl_common.wire.internal import (MAX_RELAYED_EVENTS, RELAY_PATH, RelayAnswer, RelayAnswers, RelayedEvent,
                                        RelayedEvents)

from .forward import SHARD_HEADER
from .metrics import RouterMetrics
from .upstream import ShardUnavailable, Upstreams

log = logging.getLogger("noetl.router.events")

STRAGGLER_SECONDS = 0.025    # a flight out this long lets the next one go beside it
MAX_FLIGHTS = 4              # flights to one shard at once, stragglers included
RELAY_UP_TO = 16 * 1024      # a bigger body goes alone (the shard's large-write gate weighs it)
MISROUTED = 421              # the shard's answer when the map moved (dispatch retries it)
_encode = msgspec.json.Encoder().encode
_answers = msgspec.json.Decoder(RelayAnswers)


@dataclass
class _Waiting:
    item: RelayedEvent
    answer: asyncio.Future[RelayAnswer]


@dataclass
class _Lane:
    """One shard's flights (their start times) and the events waiting for the next one."""

    flights: list[float] = field(default_factory=list)
    waiting: list[_Waiting] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None

    def free(self, now: float) -> bool:
        """No flight younger than STRAGGLER_SECONDS, and room under MAX_FLIGHTS."""
        return len(self.flights) < MAX_FLIGHTS and all(now - t >= STRAGGLER_SECONDS for t in self.flights)

    def frees_at(self) -> float | None:
        """When a straggler would free the lane (None: only a flight's return can)."""
        return max(self.flights) + STRAGGLER_SECONDS if len(self.flights) < MAX_FLIGHTS else None


class EventRelay:
    def __init__(self, up: Callable[[], Upstreams], token: str, metrics: RouterMetrics) -> None:
        self._up = up
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._metrics = metrics
        self._lanes: dict[int, _Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def forward(self, shard: int, body: bytes,
                      alone: Callable[[], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """`body` (a JSON object the router parsed) to `shard`: by `alone` while a flight is free,
        else with the events waiting beside it. Raises what `alone` or the shard request raises."""
        lane = self._lanes.setdefault(shard, _Lane())
        loop = asyncio.get_running_loop()
        started = loop.time()
        if not lane.waiting and lane.free(started):
            lane.flights.append(started)
            try:
                return await alone()
            finally:
                lane.flights.remove(started)
                self._launch(shard, lane)
        waiting = _Waiting(RelayedEvent(body=msgspec.Raw(body), traceparent=tracing.current_traceparent()),
                           loop.create_future())
        lane.waiting.append(waiting)
        self._launch(shard, lane)
        answer = await waiting.answer
        if answer.status == MISROUTED:
            return await alone()
        headers = {SHARD_HEADER: str(shard)}
        if answer.retry_after:
            headers["Retry-After"] = answer.retry_after
        return web.Response(body=bytes(answer.body), status=answer.status, content_type="application/json",
                            headers=headers)

    def _launch(self, shard: int, lane: _Lane) -> None:
        loop = asyncio.get_running_loop()
        while lane.waiting and lane.free(loop.time()):
            batch, lane.waiting = lane.waiting[:MAX_RELAYED_EVENTS], lane.waiting[MAX_RELAYED_EVENTS:]
            started = loop.time()
            lane.flights.append(started)
            self._metrics.relayed(shard, len(batch))
            task = loop.create_task(self._flight(shard, lane, batch, started))
            self._tasks.add(task)  # held until done: a task nobody references may be collected
            task.add_done_callback(self._tasks.discard)
        at = lane.frees_at() if lane.waiting else None
        if at is not None and lane.timer is None:
            # A millisecond late: a loop's timers may fire up to its clock resolution early.
            lane.timer = loop.call_at(at + 0.001, self._straggled, shard, lane)

    def _straggled(self, shard: int, lane: _Lane) -> None:
        lane.timer = None
        self._launch(shard, lane)

    async def _flight(self, shard: int, lane: _Lane, batch: list[_Waiting], started: float) -> None:
        try:
            body = _encode(RelayedEvents(items=[w.item for w in batch]))
            upstream = await self._up().request(shard, "POST", RELAY_PATH, headers=self._headers, body=body)
            try:
                raw = await upstream.read()
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:  # cut off mid-answer: a 503 to retry
                raise ShardUnavailable(shard, f"answer cut off: {type(exc).__name__}: {exc}"[:200], sent=True) from None
            finally:
                upstream.release()
            if upstream.status == 200:
                answers = _answers.decode(raw).items
                if len(answers) != len(batch):
                    raise ValueError(f"shard {shard} answered {len(answers)} of {len(batch)} relayed events")
            else:  # the whole request refused (busy, database down, ...): each event hears why
                whole = RelayAnswer(status=upstream.status, body=msgspec.Raw(raw),
                                    retry_after=upstream.headers.get("Retry-After"))
                answers = [whole] * len(batch)
            for waiting, answer in zip(batch, answers):
                if not waiting.answer.done():  # its client may have gone
                    waiting.answer.set_result(answer)
        except Exception as exc:  # each waiting request raises it (ShardUnavailable: a 503)
            if not isinstance(exc, ShardUnavailable):
                log.exception("relaying %d events to shard %s failed", len(batch), shard)
            for waiting in batch:
                if not waiting.answer.done():
                    waiting.answer.set_exception(exc)
        finally:
            lane.flights.remove(started)
            self._launch(shard, lane)
