"""One shard's projection loop: a durable JetStream pull consumer on noetl.events.<shard>.>,
batches handed to the shard's POST /api/internal/events/project, acked only once the shard
accepted them. A batch the shard cannot take right now is retried in place (keeping the
messages in progress) so events of an execution are never folded out of order."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from prometheus_client import CollectorRegistry, Counter, Gauge

from noetl_common.streams import EVENTS_STREAM

log = logging.getLogger("noetl.projector")
PROJECT_PATH = "/api/internal/events/project"
RETRY_MAX_SECONDS = 5.0
# Answers that say nothing about the events themselves (a wrong token, overload): wait, never drop.
RETRY_STATUSES = frozenset({401, 403, 429})


class ProjectorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.projected = Counter("noetl_projector_events_total", "Events handed to shards and acked",
                                 ["shard"], registry=registry)
        self.rejected = Counter("noetl_projector_rejected_total", "Events a shard refused (dropped, logged)",
                                ["shard"], registry=registry)
        self.failures = Counter("noetl_projector_request_failures_total",
                                "Project requests that failed and were retried", ["shard"], registry=registry)
        self.lag = Gauge("noetl_projector_lag_events", "Events published but not yet projected",
                         ["shard"], registry=registry)


def durable_name(shard: int) -> str:
    return f"noetl-projector-shard-{shard}"


class ShardProjector:
    def __init__(self, *, shard: int, base_url: str, token: str, batch: int, ack_wait_seconds: float,
                 js: JetStreamContext, session: aiohttp.ClientSession, metrics: ProjectorMetrics) -> None:
        self.shard = shard
        self.url = base_url + PROJECT_PATH
        self.headers = {"Authorization": f"Bearer {token}"}
        self.batch = batch
        self.ack_wait_seconds = ack_wait_seconds
        self.js = js
        self.session = session
        self.metrics = metrics
        self._stopping = asyncio.Event()
        self._sub: Any = None
        for family in (metrics.projected, metrics.rejected, metrics.failures, metrics.lag):
            family.labels(str(shard))  # series exist (at 0) before the first event

    def stop(self) -> None:
        self._stopping.set()

    async def subscribe(self) -> None:
        self._sub = await self.js.pull_subscribe(
            f"noetl.events.{self.shard}.>", durable=durable_name(self.shard), stream=EVENTS_STREAM,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
                                  ack_wait=self.ack_wait_seconds, max_ack_pending=self.batch * 4))

    async def run(self) -> None:
        if self._sub is None:
            await self.subscribe()
        while not self._stopping.is_set():
            try:
                msgs = await self._sub.fetch(self.batch, timeout=1.0)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):  # nats-py raises either when idle
                continue
            except Exception as exc:  # NATS reconnecting, a consumer being recreated: keep going
                log.warning("shard %s: fetch failed (%r); retrying", self.shard, exc)
                await asyncio.sleep(0.5)
                continue
            await self.project(msgs)

    async def project(self, msgs: list[Msg]) -> None:
        events, good = [], []
        for msg in msgs:
            try:
                events.append(msgspec.json.decode(msg.data, type=dict[str, Any]))
                good.append(msg)
            except msgspec.DecodeError:
                log.error("shard %s: dropping a message that is not a JSON event (seq %s)",
                          self.shard, msg.metadata.sequence.stream)
                self.metrics.rejected.labels(str(self.shard)).inc()
                await msg.term()
        if not events:
            return
        status = await self._post_until_answered(events, good)
        if status is None:
            return  # stopping: unacked messages are redelivered to whoever runs next
        if status >= 400:
            # The shard refuses the batch as a whole: find the culprits one by one, keep the rest.
            for event, msg in zip(events, good):
                single = await self._post_until_answered([event], [msg])
                if single is None:
                    return
                if single >= 400:
                    log.error("shard %s refused event %s (HTTP %s); dropped", self.shard, event.get("event_id"), single)
                    self.metrics.rejected.labels(str(self.shard)).inc()
                    await msg.term()
                else:
                    await msg.ack_sync()
                    self.metrics.projected.labels(str(self.shard)).inc()
            return
        for msg in good:
            await msg.ack()
        self.metrics.projected.labels(str(self.shard)).inc(len(good))

    async def _post_until_answered(self, events: list[dict[str, Any]], msgs: list[Msg]) -> int | None:
        """POST until the shard answers with a status that is not 'try again' (5xx, RETRY_STATUSES,
        network).
        Returns that status, or None when stopping first."""
        delay = 0.1
        while not self._stopping.is_set():
            try:
                async with self.session.post(self.url, json={"events": events}, headers=self.headers) as resp:
                    await resp.read()
                    if resp.status < 500 and resp.status not in RETRY_STATUSES:
                        return resp.status
                    reason = f"HTTP {resp.status}" + (" (check NOETL_INTERNAL_API_TOKEN)"
                                                      if resp.status in (401, 403) else "")
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                reason = str(exc) or type(exc).__name__
            self.metrics.failures.labels(str(self.shard)).inc()
            log.warning("shard %s: project request failed (%s); retrying in %.1fs", self.shard, reason, delay)
            for msg in msgs:  # keep them ours while we wait
                await msg.in_progress()
            try:
                await asyncio.wait_for(self._stopping.wait(), delay)
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, RETRY_MAX_SECONDS)
        return None

    async def refresh_lag(self) -> None:
        info = await self.js.consumer_info(EVENTS_STREAM, durable_name(self.shard))
        self.metrics.lag.labels(str(self.shard)).set(info.num_pending + info.num_ack_pending)
