"""The worker loop: a durable JetStream pull consumer on noetl.commands.<pool>.>; per message:
claim over HTTP, run the tool, post the outcome events, then ack.

The database claim is the exactly-once gate; JetStream only tells us there may be work. A
message is acked once its outcome is recorded (or someone else owns it). If the control plane
cannot be reached the message is nak'ed with a delay and comes back, so nothing is lost; an
outcome that could not be posted is kept and re-posted when the message returns, instead of
running the tool again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import nats
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from noetl_common.observability import execution_id_var
from noetl_common.streams import COMMANDS_STREAM as STREAM, ensure_streams

from .client import AlreadyClaimed, Backoff, ClaimFailed, Claimed, ControlPlane, ControlPlaneError, RetryLater
from .config import WorkerSettings
from .events import Reporter
from .executor import Outcome, execute, read_work
from .tools.base import Runner, ToolContext
from .wire import Command, Event, Notification, PoolRegistration

log = logging.getLogger("noetl.worker")

MAX_UNREPORTED = 1024      # outcomes kept for re-posting; bounded so a long outage cannot grow memory
RETRY_NAK_SECONDS = 2.0    # nak delay when the control plane did not take an event
BAD_CLAIM_NAK_SECONDS = 30.0


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.commands = Counter("noetl_worker_commands_total", "Commands run, by tool kind and outcome",
                                ["tool", "outcome"], registry=registry)
        self.claims = Counter("noetl_worker_claims_total", "Claim attempts by outcome", ["outcome"], registry=registry)
        self.duration = Histogram("noetl_worker_tool_seconds", "Tool run time", ["tool"], registry=registry)
        self.in_flight = Gauge("noetl_worker_in_flight", "Commands running now", registry=registry)
        self.report_failures = Counter("noetl_worker_report_failures_total",
                                       "Outcome batches the control plane did not take", registry=registry)


CLAIM_LABELS = {Claimed: "claimed", AlreadyClaimed: "already_claimed", RetryLater: "retry_later",
                ClaimFailed: "failed"}


class Unreported(msgspec.Struct):
    """An outcome the control plane did not take yet; re-posted when the message comes back."""

    base_url: str
    execution_id: int
    events: list[Event]
    key: str


class Worker:
    def __init__(self, settings: WorkerSettings, runners: dict[str, Runner], metrics: WorkerMetrics, *,
                 backoff: Backoff | None = None) -> None:
        self.settings = settings
        self.runners = runners
        self.metrics = metrics
        self.backoff = backoff
        self.nc: nats.NATS | None = None
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._slots = asyncio.Semaphore(settings.max_concurrent)
        self._unreported: OrderedDict[int, Unreported] = OrderedDict()
        self._session: aiohttp.ClientSession | None = None
        self._plane: ControlPlane | None = None

    @property
    def connected(self) -> bool:
        return bool(self.nc and self.nc.is_connected)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        s = self.settings
        self.nc = await self._connect()
        if self.nc is None:
            return
        try:
            js = self.nc.jetstream()
            await ensure_streams(js, (STREAM,))
            sub = await js.pull_subscribe(
                f"noetl.commands.{s.pool}.>", durable=s.durable, stream=STREAM,
                config=ConsumerConfig(durable_name=s.durable, ack_policy=AckPolicy.EXPLICIT,
                                      deliver_policy=DeliverPolicy.ALL, ack_wait=s.ack_wait_seconds,
                                      max_deliver=-1, max_ack_pending=max(64, s.max_concurrent * 4)))
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
                self._session = session
                self._plane = self._plane_for(s.server_url)
                pool = asyncio.create_task(self._pool_loop(), name="pool-heartbeat")
                try:
                    await self._pull(sub)
                    await self._drain_running()
                finally:
                    pool.cancel()
                    with contextlib.suppress(Exception):
                        await self._plane.deregister(s.worker_id)
        finally:
            # Not drain(): it can wait forever on a pull subscription. Unacked messages are redelivered.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), 5)

    async def _connect(self) -> nats.NATS | None:
        """nats-py does not retry a failed first connect; a worker started before NATS keeps trying."""
        delay = 0.5
        while not self._stopping.is_set():
            try:
                return await nats.connect(self.settings.nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                                          connect_timeout=5, name=self.settings.worker_id)
            except Exception as exc:
                log.warning("NATS at %s not reachable (%s); retrying in %.1fs", self.settings.nats_url, exc, delay)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                delay = min(delay * 2, 10.0)
        return None

    async def _pull(self, sub: JetStreamContext.PullSubscription) -> None:
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

    async def _drain_running(self) -> None:
        """Running steps get the grace period to finish; the rest are cancelled, and their
        messages nak'ed so another worker picks them up once the claim lease lapses."""
        if not self._tasks:
            return
        log.info("stopping: waiting up to %.0fs for %d running command(s)", self.settings.shutdown_grace_seconds,
                 len(self._tasks))
        _, pending = await asyncio.wait(set(self._tasks), timeout=self.settings.shutdown_grace_seconds)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)

    def _plane_for(self, base_url: str) -> ControlPlane:
        assert self._session is not None
        if self._plane is not None and self._plane.base_url == base_url.rstrip("/"):
            return self._plane
        return ControlPlane(base_url, self._session, backoff=self.backoff)

    async def _pool_loop(self) -> None:
        s = self.settings
        registration = PoolRegistration(name=s.worker_id, capacity=s.max_concurrent, labels={"pool_name": s.pool},
                                        hostname=socket.gethostname(), pid=os.getpid())
        assert self._plane is not None
        registered = False
        while True:
            try:
                if registered:
                    await self._plane.heartbeat(registration)
                else:
                    await self._plane.register(registration)
                    registered = True
            except Exception as exc:
                log.warning("worker pool %s failed: %s", "heartbeat" if registered else "registration", exc)
            await asyncio.sleep(s.heartbeat_seconds)

    # -- one message ------------------------------------------------------------------------------

    async def _handle(self, msg: Msg) -> None:
        try:
            await self._process(msg)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(msg.nak(delay=1))
            raise
        except Exception:
            log.exception("unexpected error handling a notification; it will be redelivered")
            with contextlib.suppress(Exception):
                await msg.nak(delay=RETRY_NAK_SECONDS)
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
        try:
            if self._stopping.is_set():
                await msg.nak(delay=1)  # not claimed: another worker (or our successor) takes it
                return
            pending = self._unreported.get(event_id)
            if pending is not None:
                await self._post_outcome(msg, event_id, pending)
                return
            plane = self._plane_for(note.server_url or self.settings.server_url)
            outcome = await plane.claim(event_id, self.settings.worker_id)
            self.metrics.claims.labels(CLAIM_LABELS[type(outcome)]).inc()
            if isinstance(outcome, Claimed):
                await self._run_claimed(plane, msg, outcome.command, event_id)
            elif isinstance(outcome, AlreadyClaimed):
                log.info("command %s not ours (%s): %s", event_id, outcome.code, outcome.message)
                await _ack(msg)
            elif isinstance(outcome, RetryLater):
                log.warning("claim of command %s postponed %.1fs: %s", event_id, outcome.delay, outcome.reason)
                await msg.nak(delay=max(outcome.delay, 0.5))
            else:
                log.error("claim of command %s failed with %s: %s", event_id, outcome.status, outcome.reason)
                # 404: the command does not exist on that control plane; asking again cannot help.
                await _ack(msg) if outcome.status == 404 else await msg.nak(delay=BAD_CLAIM_NAK_SECONDS)
        finally:
            execution_id_var.reset(token)

    async def _run_claimed(self, plane: ControlPlane, msg: Msg, command: Command, command_id: int) -> None:
        s = self.settings
        attempt = command.attempt or _int(command.context.get("attempt")) or 1
        reporter = Reporter(execution_id=command.execution_id, step=command.node_name, command_id=str(command_id),
                            worker_id=s.worker_id, attempt=attempt)
        try:
            await plane.post_events(command.execution_id, reporter.started(), s.worker_id, reporter.key("started"))
        except ControlPlaneError as exc:
            # Still CLAIMED by us: the redelivered message re-claims idempotently and starts then.
            log.warning("could not report start of %s: %s", command_id, exc)
            await msg.nak(delay=RETRY_NAK_SECONDS)
            return
        kind = read_work(command.context, command.action).kind or "unknown"
        ctx = ToolContext(credentials=plane, execution_id=command.execution_id, step=command.node_name,
                          timeout_seconds=s.tool_timeout_seconds, script_root=Path(s.script_root))
        self.metrics.in_flight.inc()
        started = time.perf_counter()
        keepalive = asyncio.create_task(self._keepalive(plane, msg, command.execution_id, reporter))
        try:
            result = await execute(command.context, command.action, self.runners, ctx)
        finally:
            keepalive.cancel()
            self.metrics.in_flight.dec()
        self.metrics.duration.labels(kind).observe(time.perf_counter() - started)
        self.metrics.commands.labels(kind, "ok" if result.ok else "error").inc()
        if not result.ok:
            log.info("command %s (%s) failed: %s", command_id, command.node_name, (result.error or "")[:300])
        await self._post_outcome(msg, command_id, self._outcome(plane, command.execution_id, reporter, result))

    def _outcome(self, plane: ControlPlane, execution_id: int, reporter: Reporter, result: Outcome) -> Unreported:
        events = (reporter.succeeded(result.result, result.stdout) if result.ok
                  else reporter.failed(result.error or "tool failed", result.stdout))
        return Unreported(base_url=plane.base_url, execution_id=execution_id, events=events,
                          key=reporter.key("ok" if result.ok else "error"))

    async def _keepalive(self, plane: ControlPlane, msg: Msg, execution_id: int, reporter: Reporter) -> None:
        """Long steps: tell JetStream we are still working, and extend the claim lease."""
        n = 0
        while True:
            await asyncio.sleep(self.settings.progress_seconds)
            n += 1
            with contextlib.suppress(Exception):
                await msg.in_progress()
            with contextlib.suppress(Exception):
                await plane.post_events(execution_id, reporter.heartbeat(), self.settings.worker_id,
                                        reporter.key(f"hb{n}"))

    async def _post_outcome(self, msg: Msg, command_id: int, outcome: Unreported) -> None:
        plane = self._plane_for(outcome.base_url)
        try:
            await plane.post_events(outcome.execution_id, outcome.events, self.settings.worker_id, outcome.key)
        except ControlPlaneError as exc:
            self.metrics.report_failures.inc()
            if exc.retryable:
                self._keep(command_id, outcome)
                log.warning("could not report outcome of %s (will re-post): %s", command_id, exc)
                await msg.nak(delay=RETRY_NAK_SECONDS)
                return
            if outcome.events[0].event_type == "call.done":
                # The server refused the result itself (too large, invalid): the step fails with why.
                log.error("control plane refused the result of %s: %s", command_id, exc)
                reporter_events = _refused(outcome.events, str(exc))
                await self._post_outcome(msg, command_id, msgspec.structs.replace(
                    outcome, events=reporter_events, key=outcome.key + ":refused"))
                return
            log.error("control plane refused the outcome of %s; giving up on it: %s", command_id, exc)
            self._unreported.pop(command_id, None)
            await _ack(msg)
            return
        self._unreported.pop(command_id, None)
        await _ack(msg)

    def _keep(self, command_id: int, outcome: Unreported) -> None:
        self._unreported[command_id] = outcome
        self._unreported.move_to_end(command_id)
        while len(self._unreported) > MAX_UNREPORTED:
            dropped, _ = self._unreported.popitem(last=False)
            log.error("dropping the unreported outcome of %s (too many pending); the claim lease will "
                      "let the command run again", dropped)


def _refused(events: list[Event], reason: str) -> list[Event]:
    """Turn a refused success into a failure report carrying the refusal."""
    first = events[0]
    error = f"the control plane refused this step's result: {reason}"[:2000]
    base = {"command_id": first.command_id, "worker_id": first.worker_id}
    return [msgspec.structs.replace(first, event_type="call.error", status="FAILED",
                                    payload={**base, "error": error}),
            msgspec.structs.replace(events[-1], event_type="command.failed", status="FAILED",
                                    payload={**base, "error": error})]


async def _ack(msg: Msg) -> None:
    """A confirmed ack: the outcome is recorded, so make sure JetStream knows before we move on
    (a plain ack is fire-and-forget and can be lost when the connection closes right after)."""
    try:
        await msg.ack_sync(timeout=5)
    except Exception as exc:  # not confirmed: the message may come back; the claim answers 409 then
        log.warning("ack of %s not confirmed: %s", msg.subject, exc)


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
