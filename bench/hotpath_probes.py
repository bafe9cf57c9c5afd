"""Cost meters for the hot-path bench: CPU per process tree (from /proc) and Postgres counters.

Both are read as snapshots before and after a workload; the report is the difference."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Callable

import asyncpg
import msgspec

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STAT_FIELDS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted")


class ProcStat(msgspec.Struct, frozen=True):
    ppid: int
    ticks: int  # utime + stime + cutime + cstime


def _read_stat(pid: int) -> ProcStat | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None  # exited between listing and reading
    # The command name (field 2) may contain spaces and parentheses; everything after the last ')'
    # is fixed: state, ppid, ..., utime (14), stime, cutime, cstime.
    rest = text[text.rfind(")") + 2:].split()
    return ProcStat(ppid=int(rest[1]), ticks=sum(int(v) for v in rest[11:15]))


def _all_processes() -> dict[int, ProcStat]:
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read_stat(int(entry))
            if stat is not None:
                table[int(entry)] = stat
    return table


def _tree_ticks(root: int, table: dict[int, ProcStat]) -> int:
    """CPU of `root` and every live descendant. Children that already exited are in their parent's
    cutime/cstime once reaped (the postmaster reaps its backends), so short-lived Postgres
    backends are not lost between two snapshots."""
    children: dict[int, list[int]] = {}
    for pid, stat in table.items():
        children.setdefault(stat.ppid, []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            total += table[pid].ticks
        todo.extend(children.get(pid, ()))
    return total


def _self_ticks() -> int:
    # Only this process: its children (the fleet, the peer) are measured on their own.
    t = os.times()
    return round((t.user + t.system) * CLOCK_TICKS)


class CpuProbe:
    """CPU milliseconds per named process tree; `driver` is this process alone."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = dict(roots)

    def snapshot(self) -> dict[str, int]:
        table = _all_processes()
        ticks = {name: _tree_ticks(pid, table) for name, pid in self.roots.items()}
        ticks["driver"] = _self_ticks()
        return ticks

    @staticmethod
    def delta_ms(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
        return {name: (after[name] - before.get(name, 0)) * 1000 / CLOCK_TICKS for name in after}


class DbSnapshot(msgspec.Struct, frozen=True):
    stats: dict[str, int]   # STAT_FIELDS summed over the watched databases
    next_xid: int           # whole server: xids handed out so far = write transactions


class DbProbe:
    """pg_stat_database over some databases plus the server's next xid, read over one connection
    to the admin database (so the probe's own queries land in a database nobody watches)."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self.conn: asyncpg.Connection | None = None

    async def open(self) -> None:
        self.conn = await asyncpg.connect(self.admin_dsn)

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()

    async def snapshot(self, databases: list[str]) -> DbSnapshot:
        assert self.conn is not None
        # A fresh snapshot's xmax is the next xid to be assigned; reading it assigns none.
        row = await self.conn.fetchrow(
            "SELECT " + ", ".join(f"coalesce(sum({f}), 0)::bigint AS {f}" for f in STAT_FIELDS) +
            ", pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS next_xid"
            " FROM pg_stat_database WHERE datname = any($1::text[])", databases)
        # pg_stat_* reads are cached for the rest of a transaction; outside one they are fresh.
        return DbSnapshot(stats={f: row[f] for f in STAT_FIELDS}, next_xid=row["next_xid"])

    async def server_version(self) -> str:
        assert self.conn is not None
        return await self.conn.fetchval("SHOW server_version")

    @staticmethod
    def delta(before: DbSnapshot, after: DbSnapshot) -> dict[str, int]:
        out = {f: after.stats[f] - before.stats[f] for f in STAT_FIELDS}
        out["write_xacts"] = after.next_xid - before.next_xid
        return out


class Meter:
    """Before/after snapshots of CPU and DB counters around each workload of one side.

    CPU and write transactions are read as soon as the workload's tail (projector, publisher) is
    done; they are exact at once. pg_stat_database is not: a backend that goes idle within a
    second of its last flush keeps its counts for PGSTAT_IDLE_INTERVAL (10 s), so an early read
    would bill them to the next workload. Its "after" read therefore waits until `settle_s` after
    the quiet point, and is put off until this side starts its next workload (or `settle()` is
    called), so the wait overlaps with the other side's workload instead of adding to the run."""

    def __init__(self, cpu: CpuProbe, db: DbProbe, databases: list[str], settle_s: float) -> None:
        self.cpu, self.db, self.databases, self.settle_s = cpu, db, databases, settle_s
        self.pending: tuple[dict, DbSnapshot, float] | None = None  # (cost to complete, before, quiet at)

    async def start(self) -> tuple[dict[str, int], DbSnapshot]:
        settled = await self.settle()
        return self.cpu.snapshot(), settled or await self.db.snapshot(self.databases)

    async def stop(self, started: tuple[dict[str, int], DbSnapshot]) -> dict:
        """The workload's cost; its pg_stat part is filled in by the next `settle()`."""
        await wait_quiet(self.cpu)
        cpu_before, db_before = started
        cpu_after, db_quiet = self.cpu.snapshot(), await self.db.snapshot(self.databases)
        cost = {"cpu_ms": CpuProbe.delta_ms(cpu_before, cpu_after),
                "db": {"write_xacts": db_quiet.next_xid - db_before.next_xid}}
        self.pending = (cost, db_before, time.perf_counter())
        return cost

    async def settle(self) -> DbSnapshot | None:
        """Complete the last workload's pg_stat counts; returns the snapshot read (None if none)."""
        if self.pending is None:
            return None
        cost, before, quiet_at = self.pending
        await asyncio.sleep(max(0.0, quiet_at + self.settle_s - time.perf_counter()))
        after = await self.db.snapshot(self.databases)
        write_xacts = cost["db"]["write_xacts"]  # from xids: exact, and not the settle window's
        cost["db"] = {**DbProbe.delta(before, after), "write_xacts": write_xacts}
        # Idle loops keep committing read-only transactions meanwhile; callers may correct for it.
        cost["stats_settle_s"] = round(time.perf_counter() - quiet_at, 2)
        self.pending = None
        return after


async def wait_quiet(cpu: CpuProbe, window_s: float = 0.5, busy_ms: float = 60.0, limit_s: float = 20.0) -> float:
    """Until the measured trees use less than `busy_ms` CPU in a `window_s` window (background
    loops alone stay well under that); returns the seconds waited."""
    return await _until_quiet(
        lambda: sum(t for name, t in cpu.snapshot().items() if name != "driver") * 1000 / CLOCK_TICKS,
        window_s, busy_ms, limit_s)


def _machine_busy_ms() -> float:
    """CPU time the whole machine has spent busy (every process, every core), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) * 1000 / CLOCK_TICKS  # less idle and iowait


async def wait_machine_quiet(window_s: float = 0.5, busy_ms: float = 60.0, limit_s: float = 20.0) -> float:
    """Until the whole machine uses less than `busy_ms` CPU in a `window_s` window: the sides
    take turns, and one side's background work after its run (a peer's storage compacting, a
    projector catching up) must not run during the next side's; returns the seconds waited."""
    return await _until_quiet(_machine_busy_ms, window_s, busy_ms, limit_s)


async def _until_quiet(busy_so_far_ms: Callable[[], float], window_s: float, busy_ms: float, limit_s: float) -> float:
    """Wait until a `window_s` window adds less than `busy_ms` to the reading, at most `limit_s`."""
    t0 = time.perf_counter()
    last = busy_so_far_ms()
    while time.perf_counter() - t0 < limit_s:
        await asyncio.sleep(window_s)
        now = busy_so_far_ms()
        used, last = now - last, now
        if used < busy_ms:
            break
    return time.perf_counter() - t0


_PROBE_DOC = {"ids": list(range(200)), "meta": {"step": "x" * 100, "weights": [1.5, 2.5] * 50}}


def speed_probe_ms(rounds: int = 3) -> float:
    """The machine's speed just now: ms for a fixed piece of pure Python and msgspec work (best of
    `rounds`). This machine's CPU speed drifts up to 2x within minutes, which moves every absolute
    figure (latency, CPU per unit) with it; a result carrying the probe can be read for its phase."""
    def once() -> float:
        t0 = time.perf_counter()
        total = 0
        for i in range(100_000):
            total += i * i % 7
        for _ in range(1000):
            msgspec.json.decode(msgspec.json.encode(_PROBE_DOC))
        return (time.perf_counter() - t0) * 1000

    return round(min(once() for _ in range(rounds)), 1)


def per_unit(cost: dict, units: int) -> dict:
    """Costs divided by a count (workflows, steps, events), rounded for reading."""
    cpu = {k: round(v / units, 3) for k, v in cost["cpu_ms"].items()}
    cpu["total"] = round(sum(v for k, v in cost["cpu_ms"].items() if k != "driver") / units, 3)
    return {"cpu_ms": cpu, "db": {k: round(v / units, 3) for k, v in cost["db"].items()}}


def less_idle(cost: dict, idle_commits_per_s: float) -> dict:
    """The read-only commits the idle side made while its statistics settled, taken out."""
    db = dict(cost["db"])
    db["xact_commit_less_idle"] = max(0, round(db["xact_commit"] - idle_commits_per_s * cost["stats_settle_s"]))
    return {**cost, "db": db}
