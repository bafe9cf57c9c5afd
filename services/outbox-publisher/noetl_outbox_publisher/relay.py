"""One relay loop per shard: claim (long-poll) -> publish with Nats-Msg-Id -> report.

What was published is reported with the next claim (the shard deletes those rows in the claim's
own statement), so a steady relay costs one shard statement per batch. Every failure path leaves
a row either unreported (it is read and published again: by this relay's next claim, or by the
next publisher if this one died) or marked failed (retried after backoff), so nothing is lost;
JetStream's duplicate window drops a re-publish of a message whose ack we never saw, so nothing
is doubled.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import msgspec
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from noetl_common import tracing
from noetl_common.background import Backoff, Loop, LoopMetrics
from noetl_common.wire.internal import (OutboxClaim, OutboxClaimRequest, OutboxFailed, OutboxFailure, OutboxMessage,
                                        OutboxPending, OutboxPublished)

from .packing import is_mirror, packs

log = logging.getLogger("noetl.outbox_publisher")

# A shard or NATS that is down: claims back off from 0.25 s to 10 s.
BACKOFF = Backoff(first=0.25, cap=10.0)
IDLE_POLL_SECONDS = 0.2  # between empty claims when the shard is not asked to long-poll (wait_ms 0)


class RelayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.loops = LoopMetrics(registry)
        self.published = Counter("noetl_outbox_published_total", "Outbox messages published", ["shard"],
                                 registry=registry)
        self.failed = Counter("noetl_outbox_publish_failed_total", "Outbox publishes that failed", ["shard"],
                              registry=registry)
        self.claim_latency = Histogram("noetl_outbox_claim_seconds", "Claim round trip (includes long-poll)",
                                       ["shard"], registry=registry)
        self.publish_latency = Histogram("noetl_outbox_publish_seconds", "JetStream publish+ack latency",
                                         ["shard"], registry=registry)
        self.pending = Gauge("noetl_outbox_pending", "Unpublished outbox rows per shard", ["shard"],
                             registry=registry)
        self.oldest_age = Gauge("noetl_outbox_oldest_pending_age_seconds",
                                "How long the oldest unpublished outbox row of the shard has waited", ["shard"],
                                registry=registry)
        self.shard_up = Gauge("noetl_outbox_shard_reachable", "1 while the shard answers claims", ["shard"],
                              registry=registry)


class ShardRelay:
    def __init__(self, *, shard: int, base_url: str, token: str, batch: int, wait_ms: int,
                 session: aiohttp.ClientSession, js: JetStreamContext, metrics: RelayMetrics) -> None:
        self.shard = str(shard)
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.batch = batch
        self.wait_ms = wait_ms
        self.session = session
        self.js = js
        self.metrics = metrics
        self.loop = Loop(f"relay-{shard}", self._iterate, metrics=metrics.loops, backoff=BACKOFF, logger=log)
        self._published: list[int] = []  # reported (and deleted) with the next claim
        # Series exist from the start (at 0), so rate() and alerts see them before the first event.
        for family in (metrics.published, metrics.failed, metrics.pending, metrics.oldest_age):
            family.labels(self.shard)
        self._tracer = tracing.tracer("noetl.outbox_publisher") if tracing.enabled() else None

    async def flush(self) -> None:
        """Report what was published without waiting for more (at shutdown)."""
        if self._published:
            await self._post("mark-published", OutboxPublished(ids=self._published))
            self._published = []

    async def _iterate(self) -> float | None:
        try:
            did_work = await self.step()
        except Exception:
            self.metrics.shard_up.labels(self.shard).set(0)
            raise
        self.metrics.shard_up.labels(self.shard).set(1)
        return IDLE_POLL_SECONDS if not did_work and self.wait_ms == 0 else None

    async def step(self) -> bool:
        started = time.perf_counter()
        async with self.session.post(f"{self.base_url}/api/internal/outbox/claim",
                                     params={"limit": str(self.batch), "wait_ms": str(self.wait_ms)},
                                     data=msgspec.json.encode(OutboxClaimRequest(published=self._published)),
                                     headers=self.headers) as resp:
            if resp.status != 200:
                raise RuntimeError(f"claim answered {resp.status}: {(await resp.text())[:200]}")
            claimed = msgspec.json.decode(await resp.read(), type=OutboxClaim)
        self._published = []
        self.metrics.claim_latency.labels(self.shard).observe(time.perf_counter() - started)
        if not claimed.items:
            return False
        published, failed = await self.publish_all(claimed.items)
        if published:
            self._published = published
            self.metrics.published.labels(self.shard).inc(len(published))
        if failed:
            await self._post("mark-failed", OutboxFailed(failures=failed))
            self.metrics.failed.labels(self.shard).inc(len(failed))
        return True

    async def publish_all(self, items: list[OutboxMessage]) -> tuple[list[int], list[OutboxFailure]]:
        """Notifications one message each, mirror rows packed (see packing); returns the ids
        published and the failures."""
        sends = [(m.subject, str(m.id), bytes(m.payload), m.headers, [m.id]) for m in items if not is_mirror(m)]
        sends += [(p.subject, p.msg_id, p.body, None, p.ids) for p in packs([m for m in items if is_mirror(m)])]

        async def one(subject: str, msg_id: str, body: bytes, headers: dict[str, str] | None,
                      ids: list[int]) -> tuple[list[int], Exception | None]:
            started = time.perf_counter()
            try:
                if self._tracer is not None and headers and tracing.TRACEPARENT in headers:
                    await self._publish_traced(subject, msg_id, body, headers)
                else:
                    await self.js.publish(subject, body, headers={**(headers or {}), "Nats-Msg-Id": msg_id},
                                          timeout=5)
            except Exception as exc:
                return ids, exc
            self.metrics.publish_latency.labels(self.shard).observe(time.perf_counter() - started)
            return ids, None

        results = await asyncio.gather(*(one(*send) for send in sends))
        published = sorted(i for ids, err in results if err is None for i in ids)
        failed = [OutboxFailure(id=i, error=f"{type(err).__name__}: {err}"[:500]) for ids, err in results if err
                  for i in ids]
        return published, failed

    async def _publish_traced(self, subject: str, msg_id: str, body: bytes, headers: dict[str, str]) -> None:
        """A notification whose row carries the issuing span: a PRODUCER span under it, and the
        message's traceparent names this span, so the worker's span follows the publish."""
        assert self._tracer is not None
        with tracing.producer_span(self._tracer, subject, msg_id, headers,
                                   {"noetl.shard": self.shard, "noetl.execution_id": subject.rsplit(".", 1)[-1]}) as out:
            await self.js.publish(subject, body, headers=out, timeout=5)

    async def _post(self, action: str, body: OutboxPublished | OutboxFailed) -> None:
        async with self.session.post(f"{self.base_url}/api/internal/outbox/{action}", data=msgspec.json.encode(body),
                                     headers=self.headers) as resp:
            if resp.status != 200:
                # Unreported rows are read again; JetStream dedupes the re-publish.
                raise RuntimeError(f"{action} answered {resp.status}")

    async def refresh_pending(self) -> None:
        async with self.session.get(f"{self.base_url}/api/internal/outbox/pending-count",
                                    headers=self.headers) as resp:
            if resp.status == 200:
                counts = msgspec.json.decode(await resp.read(), type=OutboxPending)
                self.metrics.pending.labels(self.shard).set(counts.pending)
                self.metrics.oldest_age.labels(self.shard).set(counts.oldest_age_seconds)
