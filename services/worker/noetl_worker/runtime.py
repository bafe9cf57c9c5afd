"""The worker loop: a durable JetStream pull consumer on noetl.commands.<pool>.>; per message:
claim over HTTP, run the tool, post the outcome events, then ack.

The database claim is the exactly-once gate; JetStream only tells us there may be work. A
message is acked once its outcome is recorded (or someone else owns it); if the control plane
cannot be reached it is nak'ed with a delay and comes back, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import nats
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from noetl_common.observability import execution_id_var

from .client import AlreadyClaimed, ClaimFailed, Claimed, ControlPlane, ControlPlaneError, RetryLater
from .config import WorkerSettings
from .executor import Outcome, execute
from .tools.base import Runner, ToolContext

log = logging.getLogger("noetl.worker")

STREAM = "NOETL_COMMANDS"
PROGRESS_SECONDS = 10.0


class Notification(msgspec.Struct):
    execution_id: int | str
    event_id: int | str
    step: str | None = None
    command_id: int | str | None = None
    server_url: str | None = None  # the owning shard (or router); NOETL_SERVER_URL otherwise


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.commands = Counter("noetl_worker_commands_total", "Commands run", ["tool", "outcome"], registry=registry)
        self.claims = Counter("noetl_worker_claims_total", "Claim attempts by outcome", ["outcome"], registry=registry)
        self.duration = Histogram("noetl_worker_tool_seconds", "Tool run time", ["tool"], registry=registry)
        self.in_flight = Gauge("noetl_worker_in_flight", "Commands running now", registry=registry)


class Worker:
    def __init__(self, settings: WorkerSettings, runners: dict[str, Runner], metrics: WorkerMetrics) -> None:
        self.settings = settings
        self.runners = runners
        self.metrics = metrics
        self.nc: nats.NATS | None = None
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._slots = asyncio.Semaphore(settings.max_concurrent)

    @property
    def connected(self) -> bool:
        return bool(self.nc and self.nc.is_connected)

    async def run(self) -> None:
        s = self.settings
        self.nc = await nats.connect(s.nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.5, name=s.worker_id)
        js = self.nc.jetstream()
        try:
            await js.stream_info(STREAM)
        except NotFoundError:
            await js.add_stream(StreamConfig(name=STREAM, subjects=["noetl.commands.>"], storage=StorageType.FILE))
        durable = f"noetl_worker_{s.pool}"
        sub = await js.pull_subscribe(
            f"noetl.commands.{s.pool}.>", durable=durable, stream=STREAM,
            config=ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT,
                                  deliver_policy=DeliverPolicy.ALL, ack_wait=s.ack_wait_seconds,
                                  max_deliver=-1, max_ack_pending=max(64, s.max_concurrent * 4)))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            self.session = session
            self.plane = ControlPlane(s.server_url, session)
            heartbeat = asyncio.create_task(self._heartbeat())
            try:
                while not self._stopping.is_set():
                    await self._slots.acquire()
                    if self._stopping.is_set():
                        self._slots.release()
                        break
                    try:
                        msgs = await sub.fetch(1, timeout=1)
                    except (nats.errors.TimeoutError, asyncio.TimeoutError):
                        self._slots.release()
                        continue
                    except Exception as exc:
                        self._slots.release()
                        log.warning("fetch failed: %s", exc)
                        await asyncio.sleep(0.5)
                        continue
                    task = asyncio.create_task(self._handle(msgs[0]))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                # Graceful: running steps get the grace period to finish; the rest are nak'ed by _handle.
                if self._tasks:
                    await asyncio.wait(self._tasks, timeout=s.shutdown_grace_seconds)
            finally:
                heartbeat.cancel()
                with contextlib.suppress(Exception):
                    await self.plane.pool("deregister", {"name": s.worker_id, "component_type": "worker_pool"})
        # Not drain(): it can wait forever on a pull subscription. Unacked messages are redelivered.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.nc.close(), 5)

    def stop(self) -> None:
        self._stopping.set()

    async def _heartbeat(self) -> None:
        s = self.settings
        registration = {"name": s.worker_id, "runtime": "python", "status": "ready", "capacity": s.max_concurrent,
                        "labels": {"pool_name": s.pool}}
        while True:
            try:
                await self.plane.pool("register", registration)
            except Exception as exc:
                log.warning("pool registration failed: %s", exc)
            await asyncio.sleep(s.heartbeat_seconds)

    async def _handle(self, msg: Msg) -> None:
        try:
            await self._process(msg)
        except Exception:
            log.exception("unexpected error handling a notification; it will be redelivered")
            with contextlib.suppress(Exception):
                await msg.nak(delay=2)
        finally:
            self._slots.release()

    async def _process(self, msg: Msg) -> None:
        try:
            note = msgspec.json.decode(msg.data, type=Notification)
            event_id, execution_id = int(note.event_id), int(note.execution_id)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            log.error("dropping malformed notification on %s: %s", msg.subject, exc)
            await msg.term()
            return
        token = execution_id_var.set(str(execution_id))
        plane = ControlPlane(note.server_url, self.session) if note.server_url else self.plane
        try:
            outcome = await plane.claim(event_id, self.settings.worker_id)
            self.metrics.claims.labels(type(outcome).__name__).inc()
            if isinstance(outcome, AlreadyClaimed):
                await msg.ack()  # someone else owns it, or it is finished
                return
            if isinstance(outcome, RetryLater):
                await msg.nak(delay=max(outcome.delay, 0.5))
                return
            if isinstance(outcome, ClaimFailed):
                log.error("claim of command %s failed with %s: %s", event_id, outcome.status, outcome.reason)
                await msg.ack() if outcome.status == 404 else await msg.nak(delay=5)
                return
            assert isinstance(outcome, Claimed)
            await self._run_claimed(plane, msg, outcome.command, event_id)
        finally:
            execution_id_var.reset(token)

    async def _run_claimed(self, plane: ControlPlane, msg: Msg, command: Any, command_id: int) -> None:
        s = self.settings
        execution_id = command.execution_id
        key = f"{s.worker_id}:{command_id}:{command.attempt or 1}"
        base = {"step": command.node_name, "worker_id": s.worker_id, "command_id": str(command_id)}
        if self._stopping.is_set():
            await msg.nak(delay=1)  # claimed but not started: the lease expires and another worker takes it
            return
        try:
            await plane.post_events(execution_id, [{**base, "event_type": "command.started",
                                                         "payload": {"command_id": str(command_id)}}],
                                         s.worker_id, f"{key}:started")
        except ControlPlaneError as exc:
            log.warning("could not report start of %s: %s", command_id, exc)
            await msg.nak(delay=2)
            return
        ctx = ToolContext(credentials=plane, execution_id=execution_id, step=command.node_name,
                          timeout_seconds=s.tool_timeout_seconds, script_root=Path(s.script_root))
        self.metrics.in_flight.inc()
        started = time.perf_counter()
        keepalive = asyncio.create_task(self._keepalive(plane, msg, execution_id, base, key))
        try:
            result = await execute(command.context, command.action, self.runners, ctx)
        finally:
            keepalive.cancel()
            self.metrics.in_flight.dec()
        self.metrics.duration.labels(command.action).observe(time.perf_counter() - started)
        self.metrics.commands.labels(command.action, "ok" if result.ok else "error").inc()
        await self._report(plane, msg, execution_id, command_id, base, key, result)

    async def _keepalive(self, plane: ControlPlane, msg: Msg, execution_id: int, base: dict, key: str) -> None:
        """Long steps: tell JetStream we are still working and extend the claim lease."""
        n = 0
        while True:
            await asyncio.sleep(PROGRESS_SECONDS)
            n += 1
            with contextlib.suppress(Exception):
                await msg.in_progress()
            with contextlib.suppress(Exception):
                await plane.post_events(execution_id, [{**base, "event_type": "command.heartbeat",
                                                             "payload": {"command_id": base["command_id"]}}],
                                             self.settings.worker_id, f"{key}:hb{n}")

    async def _report(self, plane: ControlPlane, msg: Msg, execution_id: int, command_id: int, base: dict, key: str,
                      result: Outcome) -> None:
        if result.ok:
            events = [{**base, "event_type": "call.done", "status": "COMPLETED",
                       "payload": {"command_id": str(command_id), "result": result.result, "stdout": result.stdout}},
                      {**base, "event_type": "command.completed", "status": "COMPLETED",
                       "payload": {"command_id": str(command_id), "status": "COMPLETED"}}]
        else:
            events = [{**base, "event_type": "call.error", "status": "FAILED",
                       "payload": {"command_id": str(command_id), "error": result.error, "stdout": result.stdout}},
                      {**base, "event_type": "command.failed", "status": "FAILED",
                       "payload": {"command_id": str(command_id), "error": result.error}}]
        try:
            await plane.post_events(execution_id, events, self.settings.worker_id, f"{key}:done:{uuid.uuid5(uuid.NAMESPACE_OID, key)}")
        except ControlPlaneError as exc:
            # Outcome not recorded: leave the message to come back; the lease lets it be retried.
            log.warning("could not report outcome of %s: %s", command_id, exc)
            await msg.nak(delay=2)
            return
        await msg.ack()
