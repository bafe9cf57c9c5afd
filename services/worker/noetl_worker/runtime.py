"""The worker loop: a durable JetStream pull consumer on noetl.commands.<pool>.>; per message:
claim over HTTP, run the tool, post the outcome events, then ack.

The database claim is the exactly-once gate; JetStream only tells us there may be work. A
message is acked once its outcome is recorded (or someone else owns it). If the control plane
cannot be reached the message is nak'ed with a delay and comes back, so nothing is lost; an
outcome that could not be posted is kept and re-posted when the message returns, instead of
running the tool again.

The lean hot path, with a shard that supports it (a NoETL server ignores or never sends it all):
- a claim answered with `started: true` has recorded command.started already: none is posted;
- an outcome batch carries `eager: {slots, pool}`, and its answer may hand over the execution's
  next commands, already claimed and started for this worker and never announced on NATS. The
  first runs in the slot just freed, extras in free slots, and their outcomes ask again, so a
  sequential chain of steps never goes through NATS. With no message to ack or nak, their
  outcomes are re-posted in-process until taken (outcomes.py);
- a burst of notifications is fetched in two pulls, whatever its size (slots.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import socket
from collections import deque
from typing import Any

import aiohttp
import msgspec
import nats
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from noetl_common import background, tracing
from noetl_common.observability import command_id_var, execution_id_var
from noetl_common.wire.internal import CommandNotification

from .client import AlreadyClaimed, Backoff, ClaimFailed, Claimed, ControlPlane, RetryLater
from . import jetstream
from .config import WorkerSettings
from .outcomes import (REPOST_BACKOFF, Accepted, Backlog, NotTaken, Unreported, merged, pipelined, post_outcome,
                       post_until_taken)
from .running import RETRY_NAK_SECONDS, CommandRunner, Job, WorkerMetrics, after_of, as_int, attempt_of
from .slots import RecentCommands, Slots
from .tools.base import Runner
from .wire import Command, EagerRequest, PoolRegistration

log = logging.getLogger("noetl.worker")

BAD_CLAIM_NAK_SECONDS = 30.0
HAND_BACK_NAK_SECONDS = 1.0  # a fetched message whose slot an eager command took meanwhile
LONG_POLL_SECONDS = 1.0  # waiting for the next notification (a pull re-sent once a second when idle)
BURST_POLL_SECONDS = 0.01  # what else is waiting right after one came
AFTER_POLL_SECONDS = 0.005  # a command to run after one still running in another slot (not expected)


class Ran(msgspec.Struct):
    """A handed-over command that ran here: its outcome to report, and the context it ran in."""

    job: Job
    outcome: Unreported
    context: contextvars.Context  # where it ran: its log ids, and its span, which its report ends
    span: Any = None


class Answer(msgspec.Struct):
    """What a reported batch's answer hands over, and whether its execution had ended."""

    jobs: list[Job]
    ended: bool


CLAIM_LABELS = {Claimed: "claimed", AlreadyClaimed: "already_claimed", RetryLater: "retry_later",
                ClaimFailed: "failed"}


class Worker:
    def __init__(self, settings: WorkerSettings, runners: dict[str, Runner], metrics: WorkerMetrics, *,
                 backoff: Backoff | None = None, repost_backoff: Backoff = REPOST_BACKOFF) -> None:
        self.settings = settings
        self.runners = runners
        self.metrics = metrics
        self.backoff = backoff
        self.repost_backoff = repost_backoff
        self.nc: nats.NATS | None = None
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._slots = Slots(settings.max_concurrent)
        self._recent = RecentCommands()
        self._runner = CommandRunner(settings, runners, metrics, self._recent)
        self._backlog = Backlog()
        self._session: aiohttp.ClientSession | None = None
        self._plane: ControlPlane | None = None
        self._tracer = tracing.tracer("noetl.worker") if tracing.enabled() else None

    @property
    def connected(self) -> bool:
        return bool(self.nc and self.nc.is_connected)

    def stop(self) -> None:
        self._stopping.set()
        self._slots.close()

    async def run(self) -> None:
        s = self.settings
        self.nc = await jetstream.connect(s, self._stopping)
        if self.nc is None:
            return
        try:
            sub = await jetstream.subscribe(self.nc, s)
            auth = {"Authorization": f"Bearer {s.internal_token}"} if s.internal_token else None
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30), headers=auth) as session:
                self._session = session
                self._plane = self._plane_for(s.server_url)
                pool = self._pool_loop()
                pool.start()
                try:
                    await self._pull(sub)
                    await self._drain_running()
                finally:
                    await pool.close()
                    with contextlib.suppress(Exception):
                        await self._plane.deregister(s.worker_id)
        finally:
            # Not drain(): it can wait forever on a pull subscription. Unacked messages are redelivered.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), 5)

    async def _pull(self, sub: JetStreamContext.PullSubscription) -> None:
        """A long poll for one notification, then, right after one came, a short poll for as many
        as there are free slots: a burst costs two pulls, and a lone notification is handled the
        moment it arrives. (nats-py's long-polling batch fetch, which reads the replies of every
        pull on one inbox, can take a stale status reply of an earlier pull for the end of the
        available messages and then hold the next notification until the poll expires: pickups
        of ~1 s, once in a few dozen.)"""
        burst = False
        while not self._stopping.is_set():
            wanted = await self._slots.reserve()
            if wanted == 0:  # closed: stopping
                break
            msgs = await (self._fetch(sub, wanted, BURST_POLL_SECONDS) if burst
                          else self._fetch(sub, 1, LONG_POLL_SECONDS))
            burst = bool(msgs)
            kept = self._slots.settle(len(msgs))
            for msg in msgs[:kept]:
                self._spawn(self._handle(msg))
            if len(msgs) > kept:
                # Their slots went to handed-over commands meanwhile (or the client had more queued
                # than asked for): not claimed, so hand them back for us or another worker.
                log.debug("no slot left for %d fetched notification(s); handing them back", len(msgs) - kept)
            for msg in msgs[kept:]:
                self._spawn(jetstream.nak(msg, HAND_BACK_NAK_SECONDS))

    async def _fetch(self, sub: JetStreamContext.PullSubscription, wanted: int, timeout: float) -> list[Msg]:
        try:
            return await sub.fetch(wanted, timeout=timeout)
        except (nats.errors.TimeoutError, asyncio.TimeoutError):
            return []
        except Exception as exc:
            log.warning("fetch failed: %s", exc)
            await asyncio.sleep(0.5)
            return []

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain_running(self) -> None:
        """Running steps (eager ones too) get the grace period to finish; the rest are cancelled.
        A cancelled message is nak'ed so another worker picks it up once the claim lease lapses;
        an eager command has no message, and the lease expiry alone hands it on."""
        if not self._tasks:
            return
        log.info("stopping: waiting up to %.0fs for %d running command(s)", self.settings.shutdown_grace_seconds,
                 len(self._tasks))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_grace_seconds
        # Re-read the set each round: an answer taken just before the stop may still hand over work.
        while self._tasks and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._tasks), timeout=left, return_when=asyncio.FIRST_COMPLETED)
        pending = set(self._tasks)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)

    def _plane_for(self, base_url: str) -> ControlPlane:
        assert self._session is not None
        if self._plane is not None and self._plane.base_url == base_url.rstrip("/"):
            return self._plane
        return ControlPlane(base_url, self._session, backoff=self.backoff)

    def _pool_loop(self) -> background.Loop:
        """Register in the pool, then heartbeat; a failed call is retried sooner than a heartbeat."""
        s = self.settings
        registration = PoolRegistration(name=s.worker_id, capacity=s.max_concurrent, labels={"pool_name": s.pool},
                                        hostname=socket.gethostname(), pid=os.getpid())
        plane = self._plane
        assert plane is not None
        registered = False

        async def beat() -> None:
            nonlocal registered
            await (plane.heartbeat if registered else plane.register)(registration)
            registered = True

        return background.Loop("pool-heartbeat", beat, metrics=self.metrics.loops, interval=s.heartbeat_seconds, logger=log,
                               backoff=background.Backoff(first=min(1.0, s.heartbeat_seconds), cap=s.heartbeat_seconds))

    # -- one slot: a message, then whatever its outcome answer hands over ------------------------

    async def _handle(self, msg: Msg) -> None:
        try:
            await self._run_chain(await self._from_notification(msg))
        finally:
            self._slots.release()

    async def _from_notification(self, msg: Msg) -> list[Job]:
        try:
            return await self._process(msg)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(msg.nak(delay=1))
            raise
        except Exception:
            log.exception("unexpected error handling a notification; it will be redelivered")
            with contextlib.suppress(Exception):
                await msg.nak(delay=RETRY_NAK_SECONDS)
            return []

    async def _run_chain(self, jobs: list[Job]) -> None:
        """Handed-over commands, in this slot while each outcome's answer hands over more. Commands
        issued `after` one another (a sequential loop's iterations, taken ahead) run back to back;
        what has ended is reported in one batch while the next ones run, each batch once the one
        before it was answered, so outcomes reach the shard in the order the commands ran."""
        todo: deque[Job] = deque()
        self._adopt(jobs, todo)
        ready: list[Ran] = []                         # ended, not reported yet
        report: asyncio.Task[Answer] | None = None  # the batch being reported
        while todo or ready or report is not None:
            if report is not None and (report.done() or not todo):
                self._take_answer(todo, await report)
                report = None
            if report is None and ready:
                # One batch is one execution's (a slot's chain is; anything else waits its turn).
                first = ready[0].outcome.execution_id
                batch = [r for r in ready if r.outcome.execution_id == first]
                ready = [r for r in ready if r.outcome.execution_id != first]
                report = asyncio.create_task(self._report_handed(batch), context=batch[-1].context)
            elif todo:
                ran = await self._run_handed(todo.popleft())
                if ran is not None:
                    ready.append(ran)

    def _take_answer(self, todo: deque[Job], answer: Answer) -> None:
        if answer.ended:  # cancelled or ended meanwhile: what was handed ahead is not started
            for job in todo:
                self._recent.forget(job.command_id)
            if todo:
                log.info("execution ended; dropping %d command(s) handed over ahead", len(todo))
            todo.clear()
        self._adopt(answer.jobs, todo)

    def _adopt(self, jobs: list[Job], todo: deque[Job]) -> None:
        """Queue handed-over jobs: one issued after a job this slot has queued or ran (the shard
        hands such a job only to the worker holding the one before it) at the end of `todo`, which
        holds this slot's sequence; a plain one too when `todo` is empty, else in a slot of its
        own; each followed by those issued after it."""
        afters = [after_of(job.command) for job in jobs]
        ids = {job.command_id for job in jobs}
        follows = {after: job for after, job in zip(afters, jobs) if after in ids}
        chains: list[tuple[int | None, list[Job]]] = []
        for after, job in zip(afters, jobs):
            if after in ids:
                continue
            chain = [job]
            while (nxt := follows.get(chain[-1].command_id)) is not None:
                chain.append(nxt)
            chains.append((after, chain))
        chains.sort(key=lambda c: c[0] is None)  # those continuing this slot's sequence first
        queued = {job.command_id for job in todo}
        for after, chain in chains:
            if after is not None and after not in queued and self._recent.running(after):
                log.warning("command %s is to run after %s, which runs in another slot; waiting for it",
                            chain[0].command_id, after)
                self._spawn(self._run_extra(chain, after=after))
            elif after is not None or not todo:
                todo.extend(chain)
            else:
                self._spawn(self._run_extra(chain))

    async def _run_extra(self, chain: list[Job], after: int | None = None) -> None:
        # Normally a slot is free (we asked for no more than were); if a race took it, wait: the
        # command's lease is long, and dropping it would leave it idle until the lease expires.
        while after is not None and self._recent.running(after):
            await asyncio.sleep(AFTER_POLL_SECONDS)
        await self._slots.take()
        try:
            await self._run_chain(chain)
        finally:
            self._slots.release()

    async def _process(self, msg: Msg) -> list[Job]:
        try:
            note = msgspec.json.decode(msg.data, type=CommandNotification)
            event_id, execution_id = int(note.event_id), int(note.execution_id)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            log.error("dropping malformed notification on %s: %s", msg.subject, exc)
            await msg.term()
            return []
        token, command_token = execution_id_var.set(str(execution_id)), command_id_var.set(str(event_id))
        parent = msg.headers.get(tracing.TRACEPARENT) if msg.headers else None
        try:
            with self._span(note.step, execution_id, event_id, parent, tracing.SpanKind.CONSUMER):
                return await self._claim_and_run(msg, note, event_id)
        finally:
            execution_id_var.reset(token)
            command_id_var.reset(command_token)

    def _span(self, step: str | None, execution_id: Any, command_id: int, traceparent: str | None,
              kind: Any, *, end_on_exit: bool = True) -> Any:
        """A command's span, child of the span that issued it (the traceparent of its notification
        or of the answer that handed it over): claim, tool run and report happen inside it (a
        handed-over command's report comes after its run: its span is ended by the report)."""
        if self._tracer is None:
            return contextlib.nullcontext()
        return self._tracer.start_as_current_span(
            f"command {step or '?'}", context=tracing.context_from(traceparent), kind=kind, end_on_exit=end_on_exit,
            attributes={"noetl.execution_id": str(execution_id), "noetl.command_id": str(command_id),
                        "noetl.step": step or "", "noetl.pool": self.settings.pool,
                        "noetl.worker_id": self.settings.worker_id})

    async def _claim_and_run(self, msg: Msg, note: CommandNotification, event_id: int) -> list[Job]:
        if self._stopping.is_set():
            await msg.nak(delay=1)  # not claimed: another worker (or our successor) takes it
            return []
        pending = self._backlog.get(event_id)
        if pending is not None:
            return await self._report_notified(msg, event_id, pending)
        if self._recent.running(event_id):
            # Handed over to us eagerly and re-announced (or a repeat): the run here reports it.
            log.info("command %s already runs here; dropping the repeated notification", event_id)
            await jetstream.ack(msg)
            return []
        plane = self._plane_for(note.server_url or self.settings.server_url)
        outcome = await plane.claim(event_id, self.settings.worker_id)
        self.metrics.claims.labels(CLAIM_LABELS[type(outcome)]).inc()
        if isinstance(outcome, Claimed):
            if self._recent.ran(event_id, attempt_of(outcome.command)):
                # A repeated notification (the reaper re-announces) while this attempt's outcome
                # is still on its way, from a server that grants a holder's repeated claim again
                # (this fleet's shards and NoETL's answer 409 active_claim): not new work. The
                # outcome's own report finishes the command.
                log.info("command %s attempt %s ran here already; not running it again", event_id,
                         attempt_of(outcome.command))
                await jetstream.ack(msg)
                return []
            return await self._run_notified(Job(plane, outcome.command, event_id, msg))
        if isinstance(outcome, AlreadyClaimed):
            log.info("command %s not ours (%s): %s", event_id, outcome.code, outcome.message)
            await jetstream.ack(msg)
        elif isinstance(outcome, RetryLater):
            log.warning("claim of command %s postponed %.1fs: %s", event_id, outcome.delay, outcome.reason)
            await msg.nak(delay=max(outcome.delay, 0.5))
        else:
            log.error("claim of command %s failed with %s: %s", event_id, outcome.status, outcome.reason)
            # 404: the command does not exist on that control plane; asking again cannot help.
            await jetstream.ack(msg) if outcome.status == 404 else await msg.nak(delay=BAD_CLAIM_NAK_SECONDS)
        return []

    async def _run_notified(self, job: Job) -> list[Job]:
        outcome = await self._runner.run(job)
        if outcome is None:
            return []
        assert job.msg is not None, "a notified job carries its message"
        return await self._report_notified(job.msg, job.command_id, outcome)

    async def _report_notified(self, msg: Msg, command_id: int, outcome: Unreported) -> list[Job]:
        """Ack once the outcome is taken (or refused for good); keep it and nak when the control
        plane could not be reached, so the redelivered message re-posts it."""
        plane = self._plane_for(outcome.base_url)
        eager = self._eager()
        # Marked as a handed-over command's report is (its answer's commands run in a chain here
        # too): a sequential loop's first report already brings the next iterations ahead.
        posted = await post_outcome(plane, pipelined(outcome) if eager is not None else outcome,
                                    self.settings.worker_id, eager)
        if isinstance(posted, NotTaken):
            self.metrics.report_failures.inc()
            if posted.retryable:
                self._backlog.keep(command_id, posted.outcome)
                log.warning("could not report outcome of %s (will re-post): %s", command_id, posted.reason)
                await msg.nak(delay=RETRY_NAK_SECONDS)
                return []
            log.error("control plane refused the outcome of %s; giving up on it: %s", command_id, posted.reason)
        self._backlog.pop(command_id)
        # The confirmed ack is a NATS round trip: the commands handed over with the answer need not
        # wait for it (a stop waits for it with the running tasks; a lost one is redelivered, and
        # the claim then answers 409).
        self._spawn(jetstream.ack(msg))
        return self._handed_over(plane, posted.commands) if isinstance(posted, Accepted) else []

    async def _run_handed(self, job: Job) -> Ran | None:
        """Run a command handed over with an outcome answer (claimed and started for us already):
        its outcome with the context it ran in (its log ids and span, which its report keeps), or
        None when it did not run to an end here."""
        token = execution_id_var.set(str(job.command.execution_id))
        command_token = command_id_var.set(str(job.command_id))
        try:
            with self._span(job.command.node_name, job.command.execution_id, job.command_id,
                            job.command.meta.get(tracing.TRACEPARENT), tracing.SpanKind.INTERNAL,
                            end_on_exit=False) as span:
                outcome = None
                try:
                    outcome = await self._runner.run(job)
                except Exception:
                    log.exception("unexpected error running handed-over command %s; its lease will expire",
                                  job.command_id)
                finally:
                    if outcome is None and span is not None:
                        span.end()
                return Ran(job, outcome, contextvars.copy_context(), span) if outcome is not None else None
        finally:
            execution_id_var.reset(token)
            command_id_var.reset(command_token)

    async def _report_handed(self, ran: list[Ran]) -> Answer:
        """Post until taken (one batch for all of `ran`, one execution's, in the order they ran);
        what the answer hands over. Marked `pipelined` while this worker takes commands eagerly:
        then a sequential loop's next iterations come ahead."""
        try:
            outcome = merged([r.outcome for r in ran])
            if self._eager() is not None:
                outcome = pipelined(outcome)
            plane = ran[0].job.plane
            posted = await post_until_taken(plane, outcome, self.settings.worker_id, self._eager, self._stopping,
                                            lambda _: self.metrics.report_failures.inc(), self.repost_backoff)
            if isinstance(posted, Accepted):
                return Answer(self._handed_over(plane, posted.commands), posted.ended)
            if len(ran) > 1 and not posted.retryable:  # one of them was refused: each on its own
                answers = [await self._report_handed([msgspec.structs.replace(r, span=None)]) for r in ran]
                return Answer([job for a in answers for job in a.jobs], any(a.ended for a in answers))
            log.error("outcome of %s not reported (%s); its lease will expire and the shard re-issues it",
                      ", ".join(str(r.job.command_id) for r in ran), posted.reason)
        except Exception:
            log.exception("unexpected error reporting handed-over command(s) %s; the lease will expire",
                          ", ".join(str(r.job.command_id) for r in ran))
        finally:
            for r in ran:
                if r.span is not None:
                    r.span.end()
        return Answer([], False)

    def _eager(self) -> EagerRequest | None:
        """How many commands we could take right now: this finishing one's slot, plus the spare
        ones. None when off or stopping: the next commands then go through NATS to whoever is up."""
        if not self.settings.eager_dispatch or self._stopping.is_set():
            return None
        return EagerRequest(slots=self._slots.offer(), pool=self.settings.pool)

    def _handed_over(self, plane: ControlPlane, commands: list[Command]) -> list[Job]:
        """Jobs for the handed-over commands, minus any this worker runs or ran already (a
        replayed answer repeats them)."""
        jobs = []
        for command in commands:
            command_id = as_int(command.event_id) or as_int(command.command_id)
            if command_id is None:
                log.error("handed-over command of %s has no id; left to its lease", command.execution_id)
                self.metrics.handed_over.labels("unreadable").inc()
            elif not self._recent.admit(command_id, attempt_of(command)):
                log.info("handed-over command %s runs or ran here already; not running it again", command_id)
                self.metrics.handed_over.labels("duplicate").inc()
            else:
                self.metrics.handed_over.labels("run").inc()
                jobs.append(Job(plane, command, command_id))
        return jobs

