"""A command announced as its commit goes out, ahead of the outbox relay.

The outbox row written with the command stays the guarantee: the publisher relays it as before,
with the same `Nats-Msg-Id` (the outbox row's id), and JetStream's duplicate window drops
whichever copy comes second. Publishing here only spares the first step of an execution the
relay's hop (commit -> the publisher's long-poll answer -> its publish), so a failure is counted
and otherwise ignored: nothing waits for it and nothing depends on it. The hot path publishes while
its statement commits (`Orchestrator._announcing`); a claim that arrives before the commit ends
waits for it (`ClaimBook.settled`), and finds nothing if the transaction failed. Without NOETL_NATS_URL, or
while NATS is unreachable, the relay alone announces, as before.

A row JetStream has acknowledged here needs no relay: its id is kept (`take_acked`) and the next
outbox claim deletes it instead of handing it to the publisher. So while the shard announces, a
commit that issued commands wakes the relay lazily, like one that only mirrored events, and the
publisher no longer publishes every command a second time for JetStream to drop. A publish that
fails wakes the relay at once (`relay_now`)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

import msgspec
import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry, Counter

from noetl_common import tracing

from ...store.outbox import OutboxRow

log = logging.getLogger("noetl.api_shard.announce")
PUBLISH_TIMEOUT_SECONDS = 2.0
# Acknowledged ids waiting for the next outbox claim; past this (no publisher claiming) the rest
# are simply relayed as before, a duplicate for JetStream to drop.
ACKED_LIMIT = 10_000
_encoder = msgspec.json.Encoder()


class PromptAnnouncer:
    def __init__(self, nats_url: str | None, registry: CollectorRegistry, shard: str,
                 relay_now: Callable[[], None]) -> None:
        self.nats_url = nats_url
        self.shard = shard
        self._relay_now = relay_now
        self._acked: set[int] = set()
        # With tracing on, a publish is a PRODUCER span under the span that issued the command (as
        # the relay's is), and the worker's span follows it.
        self._tracer = tracing.tracer("noetl.api_shard") if tracing.enabled() else None
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        counter = Counter("noetl_command_announce_total",
                          "Command notifications published by the shard right after commit, by outcome: published, "
                          "duplicate (the relay's copy came first), failed, skipped (NATS not connected)",
                          ["shard", "outcome"], registry=registry)
        self._outcomes = {o: counter.labels(shard, o) for o in ("published", "duplicate", "failed", "skipped")}

    @property
    def state(self) -> str:
        """For /api/health's `nats`: connected, disconnected, or not_used (no NOETL_NATS_URL)."""
        if not self.nats_url:
            return "not_used"
        return "connected" if self._nc is not None and self._nc.is_connected else "disconnected"

    async def start(self) -> None:
        """Connects in the background: the shard serves (and the relay announces) meanwhile."""
        if self.nats_url:
            self._spawn(self._connect(self.nats_url))

    async def _connect(self, url: str) -> None:
        async def quiet(_exc: Exception) -> None:
            pass  # nats-py logs every failed attempt with a traceback otherwise

        try:
            self._nc = await nats.connect(url, name="api-shard-announcer", allow_reconnect=True,
                                          max_reconnect_attempts=-1, reconnect_time_wait=1, connect_timeout=2,
                                          error_cb=quiet)
        except Exception as exc:  # noqa: BLE001 - retried below; the relay announces meanwhile
            log.warning("NATS not reachable for prompt announcements (%s); the outbox relay announces alone", exc)
            await asyncio.sleep(2)
            self._spawn(self._connect(url))
            return
        self._js = self._nc.jetstream()

    def announce(self, rows: list[OutboxRow]) -> bool:
        """Publish `rows` (committed or committing) without waiting for it. False when they are left to the
        relay alone (NATS not connected), which should then not wait."""
        if not rows:
            return True
        if self._js is None or self._nc is None or not self._nc.is_connected:
            self._outcomes["skipped"].inc(len(rows))
            return False
        self._spawn(self._publish(self._js, rows))
        return True

    def take_acked(self) -> list[int]:
        """Ids of outbox rows JetStream has acknowledged since the last call: published, so the
        outbox claim deletes them rather than relay them."""
        ids = list(self._acked)
        self._acked.clear()
        return ids

    async def _publish(self, js: JetStreamContext, rows: list[OutboxRow]) -> None:
        for row in rows:
            try:
                ack = await self._publish_one(js, row)
            except Exception as exc:  # noqa: BLE001 - the relay publishes the same row
                self._outcomes["failed"].inc()
                log.debug("prompt announcement of outbox row %s failed: %s", row.id, exc)
                self._relay_now()
                continue
            self._outcomes["duplicate" if ack.duplicate else "published"].inc()
            if len(self._acked) < ACKED_LIMIT:
                self._acked.add(row.id)

    async def _publish_one(self, js: JetStreamContext, row: OutboxRow) -> Any:
        headers, msg_id, body = row.headers or {}, str(row.id), _encoder.encode(row.payload)
        if self._tracer is None or tracing.TRACEPARENT not in headers:
            return await js.publish(row.subject, body, headers={**headers, "Nats-Msg-Id": msg_id},
                                    timeout=PUBLISH_TIMEOUT_SECONDS)
        with tracing.producer_span(self._tracer, row.subject, msg_id, headers,
                                   {"noetl.shard": self.shard, "noetl.execution_id": str(row.execution_id)}) as out:
            return await js.publish(row.subject, body, headers=out, timeout=PUBLISH_TIMEOUT_SECONDS)

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._nc is not None:
            await self._nc.close()
