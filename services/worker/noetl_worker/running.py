"""Running one claimed command: report its start unless the claim did, run the tool with
keepalives (JetStream in-progress for a notified command, `command.heartbeat` extending the
claim lease for all), and build the outcome batch to report."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import msgspec
from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from noetl_common.background import LoopMetrics
from noetl_common.observability import Labelled
from noetl_common.vocabulary import AFTER, TERMINAL_STATUSES

from .client import ControlPlane, ControlPlaneError
from .config import WorkerSettings
from .events import Reporter
from . import frames
from .executor import Outcome, execute, read_work
from .outcomes import Unreported
from .slots import RecentCommands
from .tools.base import Runner, ToolContext
from .tools.google_adc import GoogleTokens
from .tools.step_threads import StepThreads
from .wire import Command

log = logging.getLogger("noetl.worker")

RETRY_NAK_SECONDS = 2.0  # nak delay when the control plane did not take an event


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.loops = LoopMetrics(registry)  # the pool heartbeat
        # Labelled: children made once (every command touches three of these)
        self.commands = Labelled(Counter("noetl_worker_commands_total", "Commands run, by tool kind and outcome",
                                         ["tool", "outcome"], registry=registry))
        self.claims = Labelled(Counter("noetl_worker_claims_total", "Claim attempts by outcome", ["outcome"],
                                       registry=registry))
        self.duration = Labelled(Histogram("noetl_worker_tool_seconds", "Tool run time", ["tool"], registry=registry))
        self.in_flight = Gauge("noetl_worker_in_flight", "Commands running now", registry=registry)
        self.report_failures = Counter("noetl_worker_report_failures_total",
                                       "Outcome batches the control plane did not take", registry=registry)
        self.handed_over = Labelled(Counter(
            "noetl_worker_eager_commands_total",
            "Commands handed over in outcome answers (eager dispatch), by what became of them",
            ["outcome"], registry=registry))


class Job(msgspec.Struct):
    """A command whose claim this worker holds. `msg` is its notification; None for a command
    handed over eagerly (nothing to ack, nak or keep in progress)."""

    plane: ControlPlane
    command: Command
    command_id: int
    msg: Msg | None = None


class CommandRunner:
    """Runs commands for the worker loop, whichever way they came (a claim or a hand-over)."""

    def __init__(self, settings: WorkerSettings, runners: dict[str, Runner], metrics: WorkerMetrics,
                 recent: RecentCommands) -> None:
        self.settings = settings
        self.runners = runners
        self.metrics = metrics
        self.recent = recent
        self.step_threads = StepThreads(keep_idle=settings.max_concurrent)
        self.script_root = Path(settings.script_root)
        self.google_tokens = GoogleTokens()  # http `auth: {source: adc}`: a token lasts across steps

    async def run(self, job: Job) -> Unreported | None:
        """Run the tool of a claimed command; the outcome to report, or None when a notified
        command's start could not be reported (its message was nak'ed and comes back)."""
        command = job.command
        reporter = Reporter(execution_id=command.execution_id, step=command.node_name,
                            command_id=str(job.command_id), worker_id=self.settings.worker_id,
                            attempt=attempt_of(command))
        self.recent.start(job.command_id)
        result: Outcome | None = None
        try:
            if command.started or await self._report_start(job, reporter):
                result = await self._execute(job, reporter)
        finally:
            if result is None:  # not run (start unreported), abandoned or cancelled: a later claim may run it here
                self.recent.forget(job.command_id)
        if result is None:
            return None
        self.recent.finish(job.command_id, reporter.attempt)
        events = (reporter.succeeded(result.result, result.stdout) if result.ok
                  else reporter.failed(result.error or "tool failed", result.stdout))
        return Unreported(base_url=job.plane.base_url, execution_id=command.execution_id, events=events,
                          key=reporter.key("ok" if result.ok else "error"))

    async def _report_start(self, job: Job, reporter: Reporter) -> bool:
        """For a claim that did not start the command (a NoETL server)."""
        try:
            await job.plane.post_events(job.command.execution_id, reporter.started(), self.settings.worker_id,
                                        reporter.key("started"))
            return True
        except ControlPlaneError as exc:
            if job.msg is None:  # no message to bring it back; the claim is ours, so run it
                log.warning("could not report start of %s (running it anyway): %s", job.command_id, exc)
                return True
            # Still CLAIMED by us: the redelivered message's claim is refused (409 active_claim)
            # and acked; the lease expiry hands the command on as the next attempt.
            log.warning("could not report start of %s: %s", job.command_id, exc)
            await job.msg.nak(delay=RETRY_NAK_SECONDS)
            return False

    async def _execute(self, job: Job, reporter: Reporter) -> Outcome | None:
        """The tool's outcome; None when the step was abandoned (see _keepalive)."""
        s, command = self.settings, job.command
        kind = read_work(command.context, command.action).kind or "unknown"
        ctx = ToolContext(credentials=job.plane, execution_id=command.execution_id, step=command.node_name,
                          timeout_seconds=s.tool_timeout_seconds, script_root=self.script_root,
                          step_threads=self.step_threads, google_tokens=self.google_tokens)
        try:
            frame = frames.lease_for(job.plane, command, s.worker_id, job.command_id)
        except ValueError as exc:
            return Outcome(ok=False, error=str(exc))
        self.metrics.in_flight.inc()
        started = time.perf_counter()
        run = execute(command.context, command.action, self.runners, ctx, command.meta.get("catalog_id"))
        # A frame's lease is taken inside the work, so the command's keepalive covers a wait for it.
        work = asyncio.create_task(frame.run(run) if frame is not None else run)
        # Most steps end long before their first keepalive is due: a timer, not a task, until then.
        keepalive: list[asyncio.Task[None]] = []
        due = asyncio.get_running_loop().call_later(
            self.settings.progress_seconds,
            lambda: keepalive.append(asyncio.ensure_future(self._keepalive(job, reporter, work))))
        try:
            result = await work
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are being stopped, not the step abandoned
            log.info("command %s (%s) is over on the control plane (cancelled or taken over): step abandoned",
                     job.command_id, command.node_name)
            self.metrics.commands.labels(kind, "abandoned").inc()
            return None  # an abandoned frame is left to its lease
        finally:
            due.cancel()
            for task in keepalive:
                task.cancel()
            self.metrics.in_flight.dec()
        elapsed = time.perf_counter() - started
        self.metrics.duration.labels(kind).observe(elapsed)
        log.debug("command %s (%s, %s) ran in %.1f ms: %s", job.command_id, command.node_name, kind, elapsed * 1000,
                  "ok" if result.ok else "failed")
        self.metrics.commands.labels(kind, "ok" if result.ok else "error").inc()
        if not result.ok:
            log.info("command %s (%s) failed: %s", job.command_id, command.node_name, (result.error or "")[:300])
        return result

    async def _keepalive(self, job: Job, reporter: Reporter, work: asyncio.Task[Outcome]) -> None:
        """Long steps: tell JetStream we are still working (if a message brought the command),
        extend the claim lease, and look at the command: once the control plane has ended it (its
        execution was cancelled, or another worker took it over and finished), the step is
        abandoned, so it stops holding a slot. GET /api/commands/{id} is NoETL's own route."""
        n = 0
        while True:
            if n:  # the first is started when it is due
                await asyncio.sleep(self.settings.progress_seconds)
            n += 1
            if job.msg is not None:
                with contextlib.suppress(Exception):
                    await job.msg.in_progress()
            with contextlib.suppress(Exception):
                await job.plane.post_events(job.command.execution_id, reporter.heartbeat(), self.settings.worker_id,
                                            reporter.key(f"hb{n}"))
            try:
                status = (await job.plane.get_command(job.command_id)).status
            except Exception:  # noqa: BLE001 - unreachable or unknown here: keep running, ask again later
                continue
            if status in TERMINAL_STATUSES:  # nothing this run reports can change it any more
                work.cancel()
                return


def after_of(command: Command) -> int | None:
    """The command this one may start only after (a sequential loop's iteration taken ahead)."""
    return as_int(command.context.get(AFTER))


def attempt_of(command: Command) -> int:
    return command.attempt or as_int(command.context.get("attempt")) or 1


def as_int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
