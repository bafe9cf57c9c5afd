"""The cgroup helpers' pure parts: which hierarchy a machine offers (or why none), v2's cpu.max
line, cpu.stat parsing, and a process's descendants from a /proc laid out in a temp dir."""

from pathlib import Path

from noetl_devstack.cgroups import CpuHierarchy, children_of, find_hierarchy, parse_flat_keyed, quota_line


def test_v1_with_separate_cpuacct(tmp_path: Path) -> None:
    cpu, acct = tmp_path / "cpu", tmp_path / "cpuacct"
    cpu.mkdir()
    acct.mkdir()
    (cpu / "cpu.cfs_quota_us").write_text("-1")
    (acct / "cpuacct.usage").write_text("0")
    assert find_hierarchy(cpu, acct, tmp_path / "none") == CpuHierarchy(version=1, cpu=cpu, acct=acct)


def test_v1_without_cpuacct_says_why(tmp_path: Path) -> None:
    cpu = tmp_path / "cpu"
    cpu.mkdir()
    (cpu / "cpu.cfs_quota_us").write_text("-1")
    reason = find_hierarchy(cpu, tmp_path / "cpuacct", tmp_path / "none")
    assert isinstance(reason, str) and "cpuacct" in reason


def test_v2_needs_the_cpu_controller(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("memory io pids\n")
    reason = find_hierarchy(tmp_path / "cpu", tmp_path / "cpuacct", tmp_path)
    assert isinstance(reason, str) and "no cpu controller" in reason
    (tmp_path / "cgroup.controllers").write_text("cpu memory io pids\n")
    assert find_hierarchy(tmp_path / "cpu", tmp_path / "cpuacct", tmp_path) == \
        CpuHierarchy(version=2, cpu=tmp_path, acct=tmp_path)


def test_nothing_mounted_says_so(tmp_path: Path) -> None:
    reason = find_hierarchy(tmp_path / "a", tmp_path / "b", tmp_path / "c")
    assert isinstance(reason, str) and "no cgroup cpu controller" in reason


def test_quota_line() -> None:
    assert quota_line(1000, 20000) == "1000 20000"
    assert quota_line(None, 100000) == "max 100000"


def test_cpu_stat_parsing() -> None:
    text = "nr_periods 120\nnr_throttled 7\nthrottled_time 91000000\nweird line\n"
    assert parse_flat_keyed(text) == {"nr_periods": 120, "nr_throttled": 7, "throttled_time": 91000000}


def test_children_of_walks_descendants(tmp_path: Path) -> None:
    # pid (comm) state ppid ...; a comm with spaces and parentheses must not confuse the parse.
    for pid, comm, ppid in [(10, "postgres", 1), (11, "postgres: (idle) x", 10), (12, "bgw", 10),
                            (13, "child of 11", 11), (20, "other", 1)]:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(f"{pid} ({comm}) S {ppid} 0 0\n")
    (tmp_path / "self").mkdir()
    assert sorted(children_of(10, tmp_path)) == [11, 12, 13]
    assert children_of(20, tmp_path) == []
