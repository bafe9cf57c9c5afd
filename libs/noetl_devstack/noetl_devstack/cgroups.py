"""CPU caps and CPU accounting for local processes through the Linux cgroup cpu controller, for
the scale bench: a group per shard with a CFS quota (the shard is the bottleneck), and uncapped
groups that only count CPU. cgroup v1 (`cpu.cfs_quota_us`/`cpu.cfs_period_us` under
/sys/fs/cgroup/cpu, usage from cpuacct) or v2 (`cpu.max`, `cpu.stat` usage_usec), whichever this
machine has writable (as root). A process added to a group takes the children it forks later
along (a postmaster's new backends); the ones it has already are moved with it here."""

from __future__ import annotations

import os
import time
from pathlib import Path

import msgspec

V1_CPU = Path("/sys/fs/cgroup/cpu")
V1_CPUACCT = Path("/sys/fs/cgroup/cpuacct")
V2_ROOT = Path("/sys/fs/cgroup")


class Throttling(msgspec.Struct):
    periods: int
    throttled: int
    throttled_s: float


class CpuHierarchy(msgspec.Struct, frozen=True):
    """Where groups are made: `cpu` holds the quota, `acct` the usage (the same dir on v2 and
    where v1 mounts cpu,cpuacct together)."""
    version: int
    cpu: Path
    acct: Path


def find_hierarchy(v1_cpu: Path = V1_CPU, v1_acct: Path = V1_CPUACCT, v2: Path = V2_ROOT) -> CpuHierarchy | str:
    """The writable hierarchy, or why there is none (a sentence for the bench's skip message)."""
    if (v1_cpu / "cpu.cfs_quota_us").exists():
        acct = v1_acct if (v1_acct / "cpuacct.usage").exists() else v1_cpu
        if not (acct / "cpuacct.usage").exists():
            return f"cgroup v1 cpu at {v1_cpu} but no cpuacct.usage to count CPU with"
        if not (os.access(v1_cpu, os.W_OK) and os.access(acct, os.W_OK)):
            return f"cgroup v1 cpu controller at {v1_cpu} is not writable (root is needed)"
        return CpuHierarchy(version=1, cpu=v1_cpu, acct=acct)
    controllers = v2 / "cgroup.controllers"
    if controllers.exists():
        if "cpu" not in controllers.read_text().split():
            return f"cgroup v2 at {v2} has no cpu controller"
        if not os.access(v2, os.W_OK):
            return f"cgroup v2 at {v2} is not writable (root is needed)"
        return CpuHierarchy(version=2, cpu=v2, acct=v2)
    return "no cgroup cpu controller mounted (neither v1 /sys/fs/cgroup/cpu nor v2 /sys/fs/cgroup)"


def quota_line(quota_us: int | None, period_us: int) -> str:
    """v2's cpu.max: "<quota> <period>", or "max <period>" for no cap."""
    return f"{'max' if quota_us is None else quota_us} {period_us}"


def parse_flat_keyed(text: str) -> dict[str, int]:
    """`key value` lines (cpu.stat)."""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def children_of(pid: int, proc: Path = Path("/proc")) -> list[int]:
    """Every descendant of `pid` alive now (a postmaster's backends and helpers)."""
    parents: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses; split after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class CpuGroup:
    def __init__(self, hierarchy: CpuHierarchy, name: str, quota_us: int | None, period_us: int) -> None:
        self.h, self.name = hierarchy, name
        self.quota_us, self.period_us = quota_us, period_us
        self.dirs = sorted({hierarchy.cpu / name, hierarchy.acct / name})
        for d in self.dirs:
            if hierarchy.version == 2:  # v2 hands the cpu controller down one level at a time
                for parent in reversed([p for p in d.parents if p.is_relative_to(hierarchy.cpu)]):
                    if parent != d:
                        parent.mkdir(exist_ok=True)
                        (parent / "cgroup.subtree_control").write_text("+cpu")
            d.mkdir(parents=True, exist_ok=True)
        cpu = hierarchy.cpu / name
        if hierarchy.version == 1:
            (cpu / "cpu.cfs_period_us").write_text(str(period_us))
            (cpu / "cpu.cfs_quota_us").write_text(str(-1 if quota_us is None else quota_us))
        else:
            (cpu / "cpu.max").write_text(quota_line(quota_us, period_us))

    def add(self, pid: int, *, with_children: bool = False) -> int:
        """Move a process (all its threads) into the group, and its live descendants if asked;
        returns how many processes were moved."""
        moved = 0
        for p in [pid, *(children_of(pid) if with_children else [])]:
            try:
                for d in self.dirs:
                    (d / "cgroup.procs").write_text(str(p))
                moved += 1
            except ProcessLookupError:
                pass  # a backend that exited meanwhile
        return moved

    def usage_s(self) -> float:
        """CPU seconds used by everything that ran in the group (exited processes included)."""
        if self.h.version == 1:
            return int((self.h.acct / self.name / "cpuacct.usage").read_text()) / 1e9
        return parse_flat_keyed((self.h.cpu / self.name / "cpu.stat").read_text())["usage_usec"] / 1e6

    def throttling(self) -> Throttling:
        stat = parse_flat_keyed((self.h.cpu / self.name / "cpu.stat").read_text())
        throttled_s = stat["throttled_time"] / 1e9 if "throttled_time" in stat else stat.get("throttled_usec", 0) / 1e6
        return Throttling(periods=stat.get("nr_periods", 0), throttled=stat.get("nr_throttled", 0),
                          throttled_s=throttled_s)

    def remove(self) -> None:
        """Move what is left back to the hierarchy's root, then delete the group."""
        for d in self.dirs:
            root = self.h.acct if d.is_relative_to(self.h.acct) and self.h.acct != self.h.cpu else self.h.cpu
            try:
                pids = (d / "cgroup.procs").read_text().split()
            except OSError:
                continue  # gone already
            for pid in pids:
                try:
                    (root / "cgroup.procs").write_text(pid)
                except OSError:
                    pass  # exited meanwhile
            remove_dir(d)


def set_weight(hierarchy: CpuHierarchy, name: str, processes: int) -> None:
    """Give a group the scheduler weight of `processes` ungrouped processes. A group competes with
    its siblings as ONE entity (weight 1024 on v1, 100 on v2), so a fleet put in one group would
    get a single process's share of a busy machine and look slower than it is."""
    d = hierarchy.cpu / name
    if hierarchy.version == 1:
        (d / "cpu.shares").write_text(str(min(262144, 1024 * processes)))
    else:
        (d / "cpu.weight").write_text(str(min(10000, 100 * processes)))


def remove_dir(d: Path, attempts: int = 50) -> None:
    """rmdir a group with no processes; a child group removed just before is released
    asynchronously (EBUSY meanwhile), so it is tried again for a few seconds."""
    for _ in range(attempts):
        try:
            d.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)
