"""One shard's projection loop: a durable JetStream pull consumer on noetl.events.<shard>.>,
batches handed to the shard's POST /api/internal/events/project, acked only once the shard
accepted them. A batch the shard cannot take right now is retried in place (keeping the
messages in progress) so events of an execution are never folded out of order.

The publisher packs shard transactions: a message is `{"deliveries": [{"id", "events"}, ...]}`,
each delivery one transaction's events named by its outbox row id, which the shard marks so a
delivery seen before (redelivered, or re-published in another pack) is skipped whole. A message
may also be one transaction, `{"events": [...]}` named by its Nats-Msg-Id, or, older, a bare
envelope named by its event id."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Iterator

import aiohttp
import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from prometheus_client import CollectorRegistry, Counter, Gauge

from noetl_common.background import Backoff, Loop, LoopMetrics
from noetl_common.streams import EVENTS_STREAM, PROJECT_MAX_EVENTS, shard_events_filter
from noetl_common.wire.internal import Delivery, EventsMessage, ProjectRequest

log = logging.getLogger("noetl.projector")
PROJECT_PATH = "/api/internal/events/project"
# A project request the shard did not answer: retried in place, 0.1 s growing to 5 s.
RETRY = Backoff(first=0.1, cap=5.0)
# A fetch that failed (NATS reconnecting, a consumer being recreated): the loop backs off.
FETCH_BACKOFF = Backoff(first=0.5, cap=5.0)
# Answers that say nothing about the events themselves (a wrong token, overload): wait, never drop.
RETRY_STATUSES = frozenset({401, 403, 429})
# A lingering fetch shorter than this is not worth a round trip to the server.
MIN_FETCH_SECONDS = 0.005


class ProjectorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.loops = LoopMetrics(registry)
        self.projected = Counter("noetl_projector_events_total", "Events handed to shards and acked",
                                 ["shard"], registry=registry)
        self.rejected = Counter("noetl_projector_rejected_total",
                                "Events a shard refused or that could not be read (dropped, logged)",
                                ["shard"], registry=registry)
        self.failures = Counter("noetl_projector_request_failures_total",
                                "Project requests that failed and were retried", ["shard"], registry=registry)
        self.lag = Gauge("noetl_projector_lag_events",
                         "Messages (each one transaction's events) published but not yet projected",
                         ["shard"], registry=registry)


# The projector passes events through to the shard as they came (the shard parses them).
RawDelivery = Delivery[msgspec.Raw]


def decode(msg: Msg) -> list[RawDelivery] | None:
    """The message's deliveries, or None when it is none of the forms (or names no id). Every
    delivery returned has an id and events."""
    try:
        payload = msgspec.json.decode(msg.data, type=EventsMessage[msgspec.Raw])
    except (msgspec.DecodeError, msgspec.ValidationError):  # malformed JSON, or none of the shapes
        return None
    if payload.deliveries is not None:
        return payload.deliveries if all(d.id and d.events for d in payload.deliveries) else None
    if payload.events is not None:
        msg_id = (msg.headers or {}).get("Nats-Msg-Id")
        return [RawDelivery(msg_id, payload.events)] if msg_id and payload.events else None
    if payload.event_id not in (None, ""):
        return [RawDelivery(str(payload.event_id), [msgspec.Raw(msg.data)])]
    return None


def event_count(deliveries: list[RawDelivery]) -> int:
    return sum(len(d.events or ()) for d in deliveries)


Item = tuple[Msg, list[RawDelivery]]


def chunks(items: list[Item], max_events: int) -> Iterator[list[Item]]:
    """Consecutive runs of at most max_events events (a bigger message goes alone)."""
    chunk: list[Item] = []
    events = 0
    for item in items:
        size = event_count(item[1])
        if chunk and events + size > max_events:
            yield chunk
            chunk, events = [], 0
        chunk.append(item)
        events += size
    if chunk:
        yield chunk


def durable_name(shard: int) -> str:
    return f"noetl-projector-shard-{shard}"


class ShardProjector:
    def __init__(self, *, shard: int, base_url: str, token: str, batch: int, ack_wait_seconds: float,
                 js: JetStreamContext, session: aiohttp.ClientSession, metrics: ProjectorMetrics,
                 linger_seconds: float = 0.05, max_events: int = PROJECT_MAX_EVENTS) -> None:
        self.shard = shard
        self.url = base_url + PROJECT_PATH
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.batch = batch
        self.ack_wait_seconds = ack_wait_seconds
        self.linger_seconds = linger_seconds
        self.max_events = max_events
        self.js = js
        self.session = session
        self.metrics = metrics
        self._label = str(shard)
        self.loop = Loop(f"project-{shard}", self._step, metrics=metrics.loops, backoff=FETCH_BACKOFF, logger=log)
        self._stopping = self.loop.stopping
        self._sub: Any = None
        for family in (metrics.projected, metrics.rejected, metrics.failures, metrics.lag):
            family.labels(self._label)  # series exist (at 0) before the first event

    def stop(self) -> None:
        self.loop.stop()

    async def subscribe(self) -> None:
        self._sub = await self.js.pull_subscribe(
            shard_events_filter(self.shard), durable=durable_name(self.shard), stream=EVENTS_STREAM,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
                                  ack_wait=self.ack_wait_seconds, max_ack_pending=self.batch * 4))

    async def run(self) -> None:
        if self._sub is None:
            await self.subscribe()
        await self.loop.run()

    async def _step(self) -> None:
        """A fetch (long-polls up to a second; nothing to fetch is no failure), then the batch."""
        msgs = await self._fetch(self.batch, timeout=1.0)
        if msgs:
            msgs += await self._linger(self.batch - len(msgs))
            await self.project(msgs)

    async def _fetch(self, count: int, timeout: float) -> list[Msg]:
        try:
            return await self._sub.fetch(count, timeout=timeout)
        except (nats.errors.TimeoutError, asyncio.TimeoutError):  # nats-py raises either when idle
            return []

    async def _linger(self, room: int) -> list[Msg]:
        """More messages for the same request, for up to linger_seconds: a steady trickle then
        costs the shard one project transaction per linger window instead of one per message."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.linger_seconds
        more: list[Msg] = []
        while len(more) < room and not self._stopping.is_set():
            left = deadline - loop.time()
            if left < MIN_FETCH_SECONDS:
                break
            # At most a second per fetch, so stop() is honoured promptly even with a long linger.
            try:
                more += await self._fetch(room - len(more), timeout=min(left, 1.0))
            except Exception as exc:  # project what we have; the loop's next fetch meets the error
                log.debug("shard %s: lingering fetch failed: %r", self.shard, exc)
                break
        return more

    async def project(self, msgs: list[Msg]) -> None:
        items = await self._readable(msgs)
        for chunk in chunks(items, self.max_events):
            if not await self._project_chunk(chunk):
                return  # stopping: unacked messages are redelivered to whoever runs next

    async def _readable(self, msgs: list[Msg]) -> list[Item]:
        items = []
        for msg in msgs:
            deliveries = decode(msg)
            if deliveries is None:
                log.error("shard %s: dropping a message that is not a JSON event batch (seq %s)",
                          self.shard, msg.metadata.sequence.stream)
                self.metrics.rejected.labels(self._label).inc()
                await msg.term()
            else:
                items.append((msg, deliveries))
        return items

    async def _project_chunk(self, chunk: list[Item]) -> bool:
        """Project one request's worth; False when stopping before the shard answered."""
        status = await self._post_until_answered(chunk)
        if status is None:
            return False
        if status < 400:
            for msg, _ in chunk:
                await msg.ack()
            self.metrics.projected.labels(self._label).inc(sum(event_count(ds) for _, ds in chunk))
            return True
        # The shard refuses the batch as a whole: find the culprits one by one, keep the rest.
        for item in chunk:
            single = await self._post_until_answered([item])
            if single is None:
                return False
            await self._settle_single(item, single)
        return True

    async def _settle_single(self, item: Item, status: int) -> None:
        msg, deliveries = item
        if status >= 400:
            log.error("shard %s refused message %s (%d event(s), HTTP %s); dropped", self.shard,
                      ",".join(str(d.id) for d in deliveries), event_count(deliveries), status)
            self.metrics.rejected.labels(self._label).inc(event_count(deliveries))
            await msg.term()
        else:
            await msg.ack_sync()
            self.metrics.projected.labels(self._label).inc(event_count(deliveries))

    async def _post_until_answered(self, items: list[Item]) -> int | None:
        """POST until the shard answers with a status that is not 'try again' (5xx, RETRY_STATUSES,
        network).
        Returns that status, or None when stopping first."""
        body = msgspec.json.encode(ProjectRequest[msgspec.Raw](
            messages=[d for _, deliveries in items for d in deliveries]))
        failures = 0
        while not self._stopping.is_set():
            try:
                async with self.session.post(self.url, data=body, headers=self.headers) as resp:
                    await resp.read()
                    if resp.status < 500 and resp.status not in RETRY_STATUSES:
                        return resp.status
                    reason = f"HTTP {resp.status}" + (" (check NOETL_INTERNAL_API_TOKEN)"
                                                      if resp.status in (401, 403) else "")
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                reason = str(exc) or type(exc).__name__
            self.metrics.failures.labels(self._label).inc()
            failures += 1
            delay = RETRY.delay(failures, random.random())
            log.warning("shard %s: project request failed (%s); retrying in %.1fs", self.shard, reason, delay)
            for msg, _ in items:  # keep them ours while we wait
                await msg.in_progress()
            await self.loop.pause(delay)
        return None

    async def refresh_lag(self) -> None:
        info = await self.js.consumer_info(EVENTS_STREAM, durable_name(self.shard))
        self.metrics.lag.labels(self._label).set(info.num_pending + info.num_ack_pending)
