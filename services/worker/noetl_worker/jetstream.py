"""The worker's side of JetStream: connecting (retried until NATS is there), its durable pull
consumer on the pool's command subjects, and confirmed acks and naks."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from noetl_common.background import Backoff
from noetl_common.pools import pool_commands_filter
from noetl_common.streams import COMMANDS_STREAM, ensure_streams

from .config import WorkerSettings

log = logging.getLogger("noetl.worker")

CONNECT_BACKOFF = Backoff(first=0.5, cap=10.0, jitter=0.0)


async def connect(settings: WorkerSettings, stopping: asyncio.Event) -> nats.NATS | None:
    """nats-py does not retry a failed first connect; a worker started before NATS keeps trying.
    None when stopped first."""
    failures = 0
    while not stopping.is_set():
        try:
            return await nats.connect(settings.nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                                      connect_timeout=5, name=settings.worker_id)
        except Exception as exc:
            failures += 1
            delay = CONNECT_BACKOFF.delay(failures, 0.0)
            log.warning("NATS at %s not reachable (%s); retrying in %.1fs", settings.nats_url, exc, delay)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
    return None


async def subscribe(nc: nats.NATS, settings: WorkerSettings) -> JetStreamContext.PullSubscription:
    js = nc.jetstream()
    await ensure_streams(js, (COMMANDS_STREAM,), settings.stream_max_age)
    # max_ack_pending is per durable, so shared by every worker of the pool (each holds about
    # max_concurrent messages: a fetch asks for free slots only). It is NoETL's worker's value, or
    # that worker tears the shared durable down to recreate it. An existing durable is used as is.
    return await js.pull_subscribe(
        pool_commands_filter(settings.pool), durable=settings.durable, stream=COMMANDS_STREAM,
        config=ConsumerConfig(durable_name=settings.durable, ack_policy=AckPolicy.EXPLICIT,
                              deliver_policy=DeliverPolicy.ALL, ack_wait=settings.ack_wait_seconds,
                              max_deliver=-1, max_ack_pending=settings.max_ack_pending))


async def ack(msg: Msg) -> None:
    """A confirmed ack: the outcome is recorded, so make sure JetStream knows before we move on
    (a plain ack is fire-and-forget and can be lost when the connection closes right after)."""
    try:
        await msg.ack_sync(timeout=5)
    except Exception as exc:  # not confirmed: the message may come back; the claim answers 409 then
        log.warning("ack of %s not confirmed: %s", msg.subject, exc)


async def nak(msg: Msg, delay: float) -> None:
    with contextlib.suppress(Exception):
        await msg.nak(delay=delay)
