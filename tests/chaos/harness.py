"""Chaos harness: a 3-shard fleet started the way `make run` starts it (fleet_specs, start_fleet,
Supervisor.keep_alive restarting what dies), a bounded load driven through the router's public
API, faults injected one at a time, and after the run the checks every fault must pass:

- every execution that was started ends exactly once (one terminal status, one terminal event);
- no event is lost: each execution's log replays to its stored state (GET /api/replay/state);
- no step ran more often than its attempts allow: commands per step <= the step's retry
  attempts, claims per command <= its takeover attempts, and runs of a step (counted by the step
  itself, in a ledger file outside the fleet) <= the claims of its commands;
- the time to recover is measured (reported, not asserted beyond a liveness bound).

Recovery of a fault at time F = max(the last end of the executions in flight at F, the start of
the first RATE_WINDOW-second window after F in which executions started after F complete at
RATE_SHARE of the baseline rate) - F.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import random
import signal
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import msgspec
import yaml

from noetl_common.sharding import shard_for
from noetl_devstack import secrets
from noetl_devstack.fleet import FleetConfig, fleet_specs, router_url, start_fleet
from noetl_devstack.infra import Infra, InfraInfo
from noetl_devstack.nats import EmbeddedNats, stop_pid
from noetl_devstack.postgres import EmbeddedPostgres, server_durability
from noetl_devstack.processes import Supervisor

from tests.support.processes import alive

SHARDS = 3
LEASE_SECONDS = 10.0         # claim lease (default): long enough to tell a lease expiry from a quick recovery
RATE_WINDOW = 3.0
RATE_SHARE = 0.6
RECOVERY_TIMEOUT = 90.0      # liveness: a fault not recovered from by then fails the run
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")
TERMINAL_EVENTS = ("playbook.completed", "playbook.failed", "execution.cancelled")
FLAKY_ERROR = "chaos-flaky"  # the retried step's own failure: an execution failing with it is expected

STEP_RETRY = {("chaos/chain", s): 1 for s in ("start", "middle", "end")} | \
    {("chaos/flaky", "start"): 3, ("chaos/flaky", "end"): 1}


def _step(name: str, body: str, ledger: Path, then: str | None, retry: int = 1) -> dict[str, Any]:
    # Each step writes "<execution id> <step>" to the ledger before it works: how often steps really ran.
    code = f"open(ledger, 'a').write(str(eid) + ' {name}\\n')\nimport time\ntime.sleep(0.1)\n{body}\n"
    tool: dict[str, Any] = {"kind": "python", "code": code}
    if retry > 1:
        tool["retry"] = {"max_attempts": retry}
    step = {"step": name, "tool": tool, "input": {"ledger": str(ledger), "eid": "{{ job.execution_id }}"}}
    if then:
        step["next"] = [{"step": then}]
    return step


def playbooks(ledger: Path) -> list[bytes]:
    """chaos/chain: three short steps. chaos/flaky: a step failing 30% of its attempts, which the
    engine retries as a new command (3 attempts in all), then one more step."""
    chain = [_step("start", "result = {'a': 1}", ledger, "middle"), _step("middle", "result = {'b': 2}", ledger, "end"),
             _step("end", "result = {'c': 3}", ledger, None)]
    flaky = [_step("start", f"import random\nif random.random() < 0.3:\n    raise RuntimeError('{FLAKY_ERROR}')\n"
                            "result = {'ok': 1}", ledger, "end", retry=STEP_RETRY[("chaos/flaky", "start")]),
             _step("end", "result = {'done': 1}", ledger, None)]
    return [yaml.safe_dump({"apiVersion": "noetl.io/v2", "kind": "Playbook",
                            "metadata": {"name": path.split("/")[1], "path": path}, "workflow": steps}).encode()
            for path, steps in (("chaos/chain", chain), ("chaos/flaky", flaky))]


# --- load ----------------------------------------------------------------------------------------

@dataclass
class Run:
    eid: str
    path: str
    started: float           # monotonic: the execute call answered
    ended: float | None = None
    status: str | None = None


@dataclass
class Load:
    """`lanes` executions in flight at most, each polled every `poll` seconds until it ends."""

    http: aiohttp.ClientSession
    router: str
    lanes: int
    poll: float = 0.3
    runs: list[Run] = field(default_factory=list)
    refused: Counter = field(default_factory=Counter)   # execute answers that created nothing (429/503, not sent)
    ambiguous: int = 0                                  # execute calls whose fate is unknown (a timeout, a reset)
    _stopping: bool = False
    _tasks: list[asyncio.Task] = field(default_factory=list)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._lane(i)) for i in range(self.lanes)]

    async def stop(self, drain_timeout: float) -> None:
        """No new executions; wait for those in flight to end (or the timeout)."""
        self._stopping = True
        done, pending = await asyncio.wait(self._tasks, timeout=drain_timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for task in done:
            if task.exception() is not None:
                raise task.exception()

    async def _lane(self, lane: int) -> None:
        rng = random.Random(lane)
        while not self._stopping:
            path = "chaos/flaky" if rng.random() < 0.3 else "chaos/chain"
            run = await self._execute(path)
            if run is None:
                continue
            await self._follow(run)

    async def _execute(self, path: str) -> Run | None:
        try:
            async with self.http.post(f"{self.router}/api/execute", json={"path": path}) as r:
                if r.status < 300:
                    run = Run((await r.json())["execution_id"], path, time.monotonic())
                    self.runs.append(run)
                    return run
                self.refused[str(r.status)] += 1
                if r.status not in (429, 503):
                    self.ambiguous += r.status >= 500  # e.g. a 504: it may have been applied
                await asyncio.sleep(min(float(r.headers.get("Retry-After", "1")), 1.0))
        except aiohttp.ClientConnectorError:
            self.refused["unreachable"] += 1
            await asyncio.sleep(0.5)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            self.ambiguous += 1
            await asyncio.sleep(0.5)
        return None

    async def _follow(self, run: Run) -> None:
        while True:
            await asyncio.sleep(self.poll)
            try:
                async with self.http.get(f"{self.router}/api/executions/{run.eid}/status") as r:
                    if r.status != 200:
                        continue
                    body = await r.json()
            except (aiohttp.ClientError, asyncio.TimeoutError):
                continue
            if body.get("status") in TERMINAL:
                run.ended, run.status = time.monotonic(), body["status"]
                return

    # -- what the runs say about rates ---------------------------------------------------------

    def completed_between(self, a: float, b: float, started_after: float = float("-inf")) -> int:
        return sum(1 for r in self.runs if r.ended is not None and a <= r.ended < b and r.started >= started_after)

    def in_flight_at(self, t: float) -> list[Run]:
        return [r for r in self.runs if r.started < t and (r.ended is None or r.ended > t)]


def recovered_at(load: Load, fault_at: float, baseline_rate: float, in_flight: list[Run]) -> float | None:
    """When the fleet is back (see the module docstring), or None while it is not yet."""
    if any(r.ended is None for r in in_flight):
        return None
    drained = max((r.ended for r in in_flight if r.ended is not None), default=fault_at)
    wanted = RATE_SHARE * baseline_rate * RATE_WINDOW
    now, a = time.monotonic(), fault_at
    while a + RATE_WINDOW <= now:
        if load.completed_between(a, a + RATE_WINDOW, started_after=fault_at) >= wanted:
            return max(drained, a)
        a += 0.2
    return None


# --- the fleet -----------------------------------------------------------------------------------

class Killed(msgspec.Struct):
    at: float         # monotonic
    wall: float       # epoch seconds, to compare with the database's timestamps
    held: list[int]   # commands the killed worker held


class ChaosFleet:
    """A 3-shard fleet on the given databases and NATS, restarted like `make run` restarts it."""

    def __init__(self, work: Path, cluster_dsn: str, shard_dsns: list[str], nats_url: str, *, workers: int = 2,
                 lease: float = LEASE_SECONDS, infra: Infra | None = None, info: InfraInfo | None = None) -> None:
        self.work, self.lease = work, lease
        self.infra, self.info = infra, info  # set when the fleet owns its Postgres and NATS
        self.shard_dsns = shard_dsns
        self.ledger = work / "ledger.txt"
        self.ledger.touch()
        self.specs = fleet_specs(FleetConfig(
            cluster_dsn=cluster_dsn, shard_dsns=shard_dsns, nats_url=nats_url,
            secrets=secrets.load_or_create(work / "secrets.json"), workers=workers,
            extra_env={"NOETL_COMMAND_CLAIM_LEASE_SECONDS": str(lease),
                       "NOETL_COMMAND_REAPER_INTERVAL_SECONDS": "0.5",
                       "NOETL_COMMAND_REPUBLISH_AFTER_SECONDS": "5",
                       "NOETL_WORKER_PROGRESS_SECONDS": str(lease / 4),
                       "NOETL_DB_POOL_MAX": "8"}))
        self.by_name = {s.name: s for s in self.specs}
        self.router = router_url(self.specs)
        self.sup = Supervisor(work / "logs")
        self.restarts: list[tuple[str, int, float]] = []
        self._keeper: asyncio.Task | None = None

    @classmethod
    async def own_infra(cls, work: Path, **kw: Any) -> "ChaosFleet":
        """With a Postgres and NATS of its own under `work` (restarting them touches nothing else)."""
        infra = Infra(work, env={})
        info = await infra.up(SHARDS)
        try:
            return cls(work, info.cluster_dsn(), info.shard_dsns(SHARDS), info.nats_url, infra=infra, info=info, **kw)
        except BaseException:
            infra.down()
            raise

    async def start(self, http: aiohttp.ClientSession) -> None:
        await start_fleet(self.sup, self.specs)
        self._keeper = asyncio.create_task(self.sup.keep_alive(
            lambda name, n: self.restarts.append((name, n, time.monotonic())), interval=0.2))
        for content in playbooks(self.ledger):
            async with http.post(f"{self.router}/api/catalog/register",
                                 json={"content": base64.b64encode(content).decode()}) as r:
                assert r.status == 200, await r.text()

    def stop(self) -> None:
        """Everything this fleet started, whatever state it is in."""
        if self._keeper is not None:
            self._keeper.cancel()
        for running, proc in list(self.sup.running.values()):
            if proc.poll() is None:
                try:
                    os.kill(running.pid, signal.SIGCONT)  # a paused process would not take SIGTERM
                except ProcessLookupError:
                    pass
        try:
            self.sup.stop_all()
        finally:
            if self.infra is not None:
                self.infra.down()

    def pid(self, name: str) -> int:
        return self.sup.running[name][0].pid

    async def wait_back(self, name: str, old_pid: int, timeout: float = 60.0) -> None:
        """Until keep_alive has restarted `name` and the new process is ready."""
        deadline = time.monotonic() + timeout
        while name not in self.sup.running or self.pid(name) == old_pid:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} was not restarted within {timeout:.0f}s")
            await asyncio.sleep(0.1)
        await self.sup.wait_ready(name, timeout=max(1.0, deadline - time.monotonic()))

    async def kill_holding(self, worker: str, timeout: float = 10.0) -> "Killed":
        """SIGKILL `worker` while it holds a claimed command, so its death strands one: freeze it
        (SIGSTOP), look at what it holds, and kill it if that is something (else let it go on and
        look again; after the timeout it is killed anyway). Waits until it is back. Says when it
        was frozen for good and which commands it held."""
        conns = [await asyncpg.connect(dsn) for dsn in self.shard_dsns]
        pid = self.pid(worker)
        deadline = time.monotonic() + timeout
        try:
            while True:
                os.kill(pid, signal.SIGSTOP)
                at, wall = time.monotonic(), time.time()
                await asyncio.sleep(0.05)  # what it sent before it froze lands
                held = []
                for conn in conns:
                    held += await conn.fetchval("SELECT coalesce(array_agg(command_id), '{}') FROM noetl.command "
                                                "WHERE worker_id = $1 AND status IN ('CLAIMED', 'RUNNING')", worker)
                if held or time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.kill(pid, signal.SIGCONT)
                    break
                os.kill(pid, signal.SIGCONT)
                await asyncio.sleep(0.1 + random.random() * 0.2)
        finally:
            for conn in conns:
                await conn.close()
        await self.wait_back(worker, pid)
        return Killed(at=at, wall=wall, held=held)

    async def postgres_durability(self) -> dict:
        """The durability settings the shards' Postgres ran the faults with, and the verdict."""
        conn = await asyncpg.connect(self.shard_dsns[0])
        try:
            return await server_durability(conn)
        finally:
            await conn.close()

    async def commands(self, ids: list[int]) -> list[asyncpg.Record]:
        rows = []
        for dsn in self.shard_dsns:
            conn = await asyncpg.connect(dsn)
            try:
                rows += await conn.fetch("SELECT command_id, status, attempt, worker_id, "
                                         "extract(epoch FROM completed_at) AS completed FROM noetl.command "
                                         "WHERE command_id = ANY($1)", ids)
            finally:
                await conn.close()
        return rows

    # -- faults --------------------------------------------------------------------------------

    async def kill(self, name: str) -> None:
        old = self.pid(name)
        os.kill(old, signal.SIGKILL)
        await self.wait_back(name, old)

    async def pause(self, name: str, seconds: float) -> None:
        pid = self.pid(name)
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)

    async def restart_postgres(self, down_seconds: float = 1.0) -> None:
        assert self.info is not None, "the fleet does not own its Postgres"
        pg = EmbeddedPostgres(self.work / "pg", mode=self.info.pg_mode)
        await asyncio.to_thread(pg.stop)
        await asyncio.sleep(down_seconds)
        await asyncio.to_thread(pg.start, urlsplit(self.info.admin_dsn).port)

    async def sigkill_postgres(self, down_seconds: float = 1.0) -> None:
        """Postgres killed, not stopped: SIGKILL to the postmaster and every backend at once (no
        checkpoint, no flush of WAL buffers), then started again, recovering from its WAL. An
        acknowledged commit that was not flushed (synchronous_commit=off) is lost here."""
        assert self.info is not None, "the fleet does not own its Postgres"
        pg = EmbeddedPostgres(self.work / "pg", mode=self.info.pg_mode)
        pidfile = self.work / "pg" / ("pgserver" if self.info.pg_mode == "pgserver" else "data") / "postmaster.pid"
        postmaster = int(pidfile.read_text().split()[0])
        family = [postmaster, *_children(postmaster)]
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in family):
            assert time.monotonic() < deadline, "postgres processes survived SIGKILL"
            await asyncio.sleep(0.05)
        # A dead postmaster nobody has reaped yet still answers kill(pid, 0), which Postgres reads as
        # "another postmaster is running": its pid file and its sockets' lock files (which name it
        # too) go, as a reboot would take them.
        pidfile.unlink(missing_ok=True)
        for lock in (self.work / "pg").rglob(".s.PGSQL.*.lock"):
            lock.unlink(missing_ok=True)
        await asyncio.sleep(down_seconds)
        await asyncio.to_thread(pg.start, urlsplit(self.info.admin_dsn).port)

    async def restart_nats(self, down_seconds: float = 1.0) -> None:
        assert self.info is not None and self.infra is not None, "the fleet does not own its NATS"
        await asyncio.to_thread(stop_pid, self.info.nats_pid)
        await asyncio.sleep(down_seconds)
        _, pid = await asyncio.to_thread(EmbeddedNats(self.work / "nats").start, urlsplit(self.info.nats_url).port)
        self.info = msgspec.structs.replace(self.info, nats_pid=pid)
        self.infra.state_file.write_bytes(msgspec.json.encode(self.info))  # so down() stops this one


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry.name))
    return found


# --- checks --------------------------------------------------------------------------------------

@dataclass
class Facts:
    """What the shards' databases and the ledger say, per execution."""

    status: dict[str, str] = field(default_factory=dict)
    path: dict[str, str] = field(default_factory=dict)
    error: dict[str, str] = field(default_factory=dict)
    terminal_events: Counter = field(default_factory=Counter)
    commands_per_step: dict[tuple[str, str], int] = field(default_factory=dict)   # (eid, step)
    claims_per_step: dict[tuple[str, str], int] = field(default_factory=dict)
    max_claims: dict[str, int] = field(default_factory=dict)                       # eid -> max claims of a command
    over_takeover: dict[str, int] = field(default_factory=dict)                    # eid -> commands past max_attempts
    runs_per_step: Counter = field(default_factory=Counter)
    replay_mismatch: set[str] = field(default_factory=set)
    command_events: defaultdict = field(default_factory=lambda: defaultdict(list))  # eid -> lines, to explain


async def collect(fleet: ChaosFleet, http: aiohttp.ClientSession) -> Facts:
    facts = Facts()
    for dsn in fleet.shard_dsns:
        conn = await asyncpg.connect(dsn)
        try:
            for r in await conn.fetch("SELECT execution_id, status, path, error FROM noetl.execution"):
                eid = str(r["execution_id"])
                facts.status[eid], facts.path[eid], facts.error[eid] = r["status"], r["path"], r["error"] or ""
            for r in await conn.fetch("SELECT execution_id, count(*) AS n FROM noetl.event "
                                      "WHERE event_type = ANY($1) GROUP BY execution_id", list(TERMINAL_EVENTS)):
                facts.terminal_events[str(r["execution_id"])] = r["n"]
            for r in await conn.fetch(
                    "SELECT execution_id, node_name, command_id, event_type, worker_id, attempt, "
                    "  to_char(created_at, 'MI:SS.MS') AS at FROM noetl.event WHERE command_id IS NOT NULL "
                    "ORDER BY event_id"):
                facts.command_events[str(r["execution_id"])].append(
                    f'{r["at"]} {r["node_name"]} {r["command_id"]} {r["event_type"]} {r["worker_id"]} a{r["attempt"]}')
            rows = await conn.fetch(
                "SELECT c.execution_id, c.step, c.command_id, c.max_attempts, "
                "  (SELECT count(*) FROM noetl.event e WHERE e.command_id = c.command_id "
                "     AND e.event_type = 'command.claimed') AS claims "
                "FROM noetl.command c")
        finally:
            await conn.close()
        for r in rows:
            eid, step = str(r["execution_id"]), r["step"]
            facts.commands_per_step[(eid, step)] = facts.commands_per_step.get((eid, step), 0) + 1
            facts.claims_per_step[(eid, step)] = facts.claims_per_step.get((eid, step), 0) + r["claims"]
            facts.max_claims[eid] = max(facts.max_claims.get(eid, 0), r["claims"])
            if r["claims"] > r["max_attempts"]:
                facts.over_takeover[eid] = facts.over_takeover.get(eid, 0) + 1
    for line in fleet.ledger.read_text().splitlines():
        eid, step = line.split()
        facts.runs_per_step[(eid, step)] += 1
    sem = asyncio.Semaphore(8)

    async def replay(eid: str) -> None:
        async with sem:
            async with http.get(f"{fleet.router}/api/replay/state", params={"execution_id": eid}) as r:
                if r.status != 200 or not (await r.json()).get("matches"):
                    facts.replay_mismatch.add(eid)

    await asyncio.gather(*(replay(eid) for eid in facts.status))
    return facts


@dataclass
class Phase:
    name: str
    began: float
    fault_at: float | None = None
    back_at: float | None = None        # the faulted process (or server) serves again
    recovered: float | None = None
    ended: float | None = None
    in_flight: list[Run] = field(default_factory=list)   # at the fault
    shard: int | None = None            # the shard the fault hit, if it hit one
    held: list[int] = field(default_factory=list)  # commands the killed worker held
    fault_wall: float = 0.0
    held_report: dict[str, Any] | None = None


def assign(phases: list[Phase], runs: list[Run]) -> dict[str, list[Run]]:
    """Each execution to one phase: the last fault it was in flight at, or else the phase it was
    started in (a phase runs from its fault to the next one; the baseline until the first)."""
    owned: dict[str, list[Run]] = {p.name: [] for p in phases}
    for run in runs:
        owner = phases[0]
        for phase in phases[1:]:
            if run.started >= phase.fault_at or run in phase.in_flight:
                owner = phase
        owned[owner.name].append(run)
    return owned


def phase_report(phase: Phase, mine: list[Run], facts: Facts) -> dict[str, Any]:
    """Per phase: the executions it owns (see assign), and what happened to them."""
    ids = [r.eid for r in mine]
    id_set = set(ids)
    ended_once = [e for e in ids if facts.status.get(e) in TERMINAL and facts.terminal_events[e] == 1]
    expected_failures = [e for e in ids if facts.status.get(e) == "FAILED" and FLAKY_ERROR in facts.error.get(e, "")]
    over_attempts = []
    steps_of = defaultdict(set)
    for (eid, step) in [*facts.commands_per_step, *facts.runs_per_step]:
        steps_of[eid].add(step)
    for e in ids:
        path = facts.path.get(e, "")
        bad = facts.over_takeover.get(e, 0)
        for step in steps_of.get(e, []):
            if facts.commands_per_step.get((e, step), 0) > STEP_RETRY.get((path, step), 1):
                bad += 1
            if facts.runs_per_step[(e, step)] > facts.claims_per_step.get((e, step), 0):
                bad += 1
        if bad:
            over_attempts.append(e)
    report = {
        "executions": len(ids),
        "completed": sum(1 for e in ids if facts.status.get(e) == "COMPLETED"),
        "failed_by_playbook": len(expected_failures),
        "failed_otherwise": sum(1 for e in ids if facts.status.get(e) in ("FAILED", "CANCELLED"))
        - len(expected_failures),
        "lost": sum(1 for e in ids if facts.status.get(e) not in TERMINAL or e in facts.replay_mismatch),
        "not_ended": sum(1 for e in ids if facts.status.get(e) not in TERMINAL),
        "replay_mismatch": sum(1 for e in ids if e in facts.replay_mismatch),
        "duplicated": sum(1 for e in ids if facts.terminal_events[e] > 1),
        "over_attempts": len(over_attempts),
        "max_attempts": max((facts.max_claims.get(e, 0) for e in ids), default=0),
        "max_step_runs": max((n for (e, _), n in facts.runs_per_step.items() if e in id_set), default=0),
        "ended_exactly_once": len(ended_once),
    }
    odd = [e for e in ids if facts.status.get(e) in ("FAILED", "CANCELLED") and e not in expected_failures]
    if odd:  # what went wrong, for the reader of a failed run
        report["sample_errors"] = sorted({facts.error.get(e, "")[:300] for e in odd})[:3]
    if over_attempts:  # what ran too often, for the reader of a failed run
        report["over_attempts_detail"] = {e: {"runs": {st: facts.runs_per_step[(e, st)] for st in steps_of[e]},
                                              "events": facts.command_events[e]} for e in over_attempts[:2]}
    if phase.held_report is not None:
        report["killed_worker_held"] = phase.held_report
    if phase.fault_at is not None:
        report["in_flight_at_fault"] = len(phase.in_flight)
        if phase.shard is not None:
            # The executions the faulted shard held: how long after it served again were they done?
            held = [r for r in phase.in_flight if shard_for(int(r.eid), SHARDS) == phase.shard]
            report["in_flight_on_faulted_shard"] = len(held)
            if held and phase.back_at and all(r.ended for r in held):
                report["faulted_shard_in_flight_done_after_back_seconds"] = round(
                    max(r.ended for r in held) - phase.back_at, 2)
        report["process_back_seconds"] = round(phase.back_at - phase.fault_at, 2) if phase.back_at else None
        report["recovery_seconds"] = round(phase.recovered - phase.fault_at, 2) if phase.recovered else None
    return report


# --- a run: baseline, then each fault in turn ------------------------------------------------------

class Fault(msgspec.Struct):
    name: str
    inject: Any               # zero-argument coroutine function: injects, returns once the fault is over
    shard: int | None = None  # the shard it hits, if any


async def run_faults(fleet: ChaosFleet, http: aiohttp.ClientSession, faults: list[Fault], *, lanes: int,
                     baseline_seconds: float = 8.0, settle_seconds: float = 2.0) -> dict[str, Any]:
    """Load the fleet, measure its normal rate, inject the faults one after another (each once
    the previous one is recovered from), stop the load, check everything. Returns the report."""
    load_avg_at_start = os.getloadavg()[0]
    load = Load(http, fleet.router, lanes)
    load.start()
    t0 = time.monotonic()
    await asyncio.sleep(2.0)  # warm-up: caches, connections, JIT of the first steps
    b0 = time.monotonic()
    await asyncio.sleep(baseline_seconds)
    b1 = time.monotonic()
    baseline_rate = load.completed_between(b0, b1) / (b1 - b0)
    assert baseline_rate > 0, "the fleet completed nothing before any fault"
    phases = [Phase("baseline", began=t0, ended=b1)]
    for fault in faults:
        phase = Phase(fault.name, began=time.monotonic(), shard=fault.shard)
        phases.append(phase)
        if fault.shard is not None:  # hit the shard while it holds work (a few seconds at most)
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and sum(
                    1 for r in load.in_flight_at(time.monotonic()) if shard_for(int(r.eid), SHARDS) == fault.shard) < 2:
                await asyncio.sleep(0.02)
        phase.fault_at, phase.fault_wall = time.monotonic(), time.time()
        phase.in_flight = load.in_flight_at(phase.fault_at)
        killed = await fault.inject()
        if isinstance(killed, Killed):  # the fault came later than it was asked for
            phase.fault_at, phase.fault_wall, phase.held = killed.at, killed.wall, killed.held
            phase.in_flight = load.in_flight_at(phase.fault_at)
        phase.back_at = time.monotonic()
        while (recovered := recovered_at(load, phase.fault_at, baseline_rate, phase.in_flight)) is None:
            if time.monotonic() - phase.fault_at > RECOVERY_TIMEOUT:
                break
            await asyncio.sleep(0.25)
        phase.recovered = recovered
        await asyncio.sleep(settle_seconds)
        phase.ended = time.monotonic()
        if phase.recovered is None:
            break  # the fleet did not come back: no point in hurting it more
    await load.stop(drain_timeout=120.0)
    facts = await collect(fleet, http)
    for phase in phases:
        if phase.held:  # the killed worker's commands: who finished them, and when
            rows = await fleet.commands(phase.held)
            done = [float(r["completed"]) - phase.fault_wall for r in rows if r["completed"] is not None]
            phase.held_report = {"commands": len(phase.held), "final_attempts": sorted(r["attempt"] for r in rows),
                                 "done_after_fault_seconds": round(max(done), 2) if done else None}
    owned = assign(phases, load.runs)
    known = {r.eid for r in load.runs}
    orphans = [e for e in facts.status if e not in known]  # an execute whose answer never arrived
    return {
        "fleet": {"shards": SHARDS, "workers": sum(1 for s in fleet.specs if s.module == "noetl_worker"),
                  "claim_lease_seconds": fleet.lease, "lanes": lanes},
        # Other work on the machine slows restarts and recoveries alike; this says how busy it was.
        "machine": {"cpus": os.cpu_count(), "load_average_1m_at_start": round(load_avg_at_start, 1),
                    "load_average_1m_at_end": round(os.getloadavg()[0], 1)},
        "postgres": await fleet.postgres_durability(),
        "baseline_rate_per_second": round(baseline_rate, 2),
        "recovery_definition": f"max(last end of the executions in flight at the fault, start of the first "
                               f"{RATE_WINDOW:.0f} s window in which executions started after the fault complete "
                               f"at >= {RATE_SHARE:.0%} of the baseline rate) - fault time",
        "faults": {p.name: phase_report(p, owned[p.name], facts) for p in phases},
        "execute_refused": dict(load.refused),
        "execute_ambiguous": load.ambiguous,
        "orphans": {"executions": len(orphans),
                    "not_ended_once": sum(1 for e in orphans if facts.status.get(e) not in TERMINAL
                                          or facts.terminal_events[e] != 1)},
        "unhandled_errors": unhandled_errors(fleet.work / "logs"),
        "restarts": [{"process": n, "restart": c, "at_seconds": round(t - t0, 2)} for n, c, t in fleet.restarts],
    }


def unhandled_errors(log_dir: Path) -> dict[str, int]:
    """500 answers per process: every fault here is one a service must answer with a 503 or ride out."""
    counts = {}
    for log in sorted(log_dir.glob("*.log")):
        n = sum(1 for line in log.read_text(errors="replace").splitlines() if "unhandled error on" in line)
        if n:
            counts[log.stem] = n
    return counts


def problems(report: dict[str, Any]) -> list[str]:
    """Every broken promise in a report; empty when the run was clean."""
    found = []
    for name, r in report["faults"].items():
        for key in ("lost", "duplicated", "over_attempts", "failed_otherwise"):
            if r[key]:
                found.append(f"{name}: {key} = {r[key]}")
        if r["executions"] != r["ended_exactly_once"]:
            found.append(f"{name}: {r['executions'] - r['ended_exactly_once']} execution(s) did not end exactly once")
        if "recovery_seconds" in r and (r["recovery_seconds"] is None or r["recovery_seconds"] > 60):
            found.append(f"{name}: not recovered within 60 s ({r['recovery_seconds']})")
    if report["unhandled_errors"]:
        found.append(f"500 internal errors answered: {report['unhandled_errors']}")
    if report["orphans"]["not_ended_once"]:
        found.append(f"orphans: {report['orphans']['not_ended_once']} did not end exactly once")
    return found
