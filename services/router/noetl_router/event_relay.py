"""Single `POST /api/events` requests for one shard, sent on together while that shard is busy.

Up to FLIGHTS requests per shard go as they came, alone; past that, events wait for the next free
flight and go in one request to the shard's `/api/internal/events/relay` (at most
MAX_RELAYED_EVENTS), each answered as it would have been alone. An idle fleet adds no wait; a
busy one pays one HTTP exchange per batch instead of per event, on the router and on the shard,
and the shard writes the batch's events in one group commit. A relayed event the shard answers
421 (the map moved) is sent again alone, through the path that refreshes the map."""

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

FLIGHTS = 2                  # requests in flight to one shard before events wait to go together
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
    in_flight: int = 0
    waiting: list[_Waiting] = field(default_factory=list)


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
        if lane.in_flight < FLIGHTS and not lane.waiting:
            lane.in_flight += 1
            try:
                return await alone()
            finally:
                lane.in_flight -= 1
                self._launch(shard, lane)
        waiting = _Waiting(RelayedEvent(body=msgspec.Raw(body), traceparent=tracing.current_traceparent()),
                           asyncio.get_running_loop().create_future())
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
        while lane.waiting and lane.in_flight < FLIGHTS:
            batch, lane.waiting = lane.waiting[:MAX_RELAYED_EVENTS], lane.waiting[MAX_RELAYED_EVENTS:]
            lane.in_flight += 1
            self._metrics.relayed(shard, len(batch))
            task = asyncio.get_running_loop().create_task(self._flight(shard, lane, batch))
            self._tasks.add(task)  # held until done: a task nobody references may be collected
            task.add_done_callback(self._tasks.discard)

    async def _flight(self, shard: int, lane: _Lane, batch: list[_Waiting]) -> None:
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
            lane.in_flight -= 1
            self._launch(shard, lane)
