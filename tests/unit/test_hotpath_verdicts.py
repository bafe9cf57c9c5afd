"""The hot-path bench's verdicts: which Postgres settings count as durable (read from a running
server or from a stopped one's data directory), a comparison across different durability marked
invalid, and issue 24's targets evaluated from the report's numbers."""

from pathlib import Path

from bench.hotpath_report import durability_pairs, targets
from bench.peer_noetl import settings_of_datadir
from noetl_devstack.postgres import postgres_verdict

DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}


def test_any_setting_that_loses_a_commit_or_a_page_is_not_durable():
    assert postgres_verdict(DURABLE)["durable"] is True
    assert postgres_verdict({**DURABLE, "synchronous_commit": "local"})["durable"] is True
    for name, value in (("fsync", "off"), ("synchronous_commit", "off"), ("full_page_writes", "off")):
        assert postgres_verdict({**DURABLE, name: value})["durable"] is False, name


def test_a_stopped_servers_settings_come_from_its_command_line_over_its_config(tmp_path: Path):
    (tmp_path / "postgresql.conf").write_text("fsync = off   # tuned\n#full_page_writes = off\n")
    assert settings_of_datadir(tmp_path) == {**DURABLE, "fsync": "off"}
    (tmp_path / "postmaster.opts").write_text(
        '/usr/lib/postgresql/15/bin/postgres "-D" "/d" "-c" "fsync=on" "-c" "synchronous_commit=off"\n')
    assert settings_of_datadir(tmp_path) == {**DURABLE, "synchronous_commit": "off"}


def test_a_comparison_across_different_durability_is_marked_and_not_met():
    sides = {"fleet": {"durable": True}, "dbos": {"durable": True}, "restate": {"durable": False}}
    same = durability_pairs(sides)
    assert same == {"dbos": True, "restate": False, "noetl_server": None}
    report = {"ratios": {"dbos": {"wf_per_s": 1.5}, "restate": {"wf_per_s": 2.0}},
              "fleet": {}, "durability": {"sides": sides, "same": same}}
    by_name = {t["target"]: t for t in targets(report)}
    assert by_name["3-step 50 in flight, fleet/DBOS wf/s >= 1.3"]["met"] is True
    restate = by_name["3-step 50 in flight, fleet/Restate wf/s >= 1.3"]
    assert restate["met"] is False and "durability" in restate["invalid"]


def loop(rate: float, truncated: bool = False) -> dict:
    return {"steps_per_s": rate, "server_steps_per_s": rate, "truncated": truncated}


def test_targets_read_the_numbers_they_name():
    fleet = {"loop": {"100": loop(400), "5000": loop(330)},
             "three_step_alone": {"server_p50_ms": 11.0, "server_p99_ms": 30.0},
             "ingest": {"events_per_s": 2600.0, "p99_ms": 31.0, "cost_per_event": {"cpu_ms": {
                 "router": 0.2, "api-shard-0": 0.2, "postgres": 0.15, "projector": 0.5, "driver": 0.3}}}}
    report = {"ratios": {"dbos": {"loop_steps_per_s_n1000": 1.1}, "noetl_server": {"wf_per_s": 3.2}},
              "fleet": fleet, "durability": {"same": {"dbos": True, "restate": None, "noetl_server": True}}}
    got = {t["target"]: (t["value"], t["met"]) for t in targets(report)}
    assert got["loop n=1000, fleet/DBOS steps/s >= 1.2"] == (1.1, False)
    assert got["3-step 50 in flight, fleet/NoETL server wf/s (NoETL's worker on both) >= 3.0"] == (3.2, True)
    assert got["loop n=5000 vs n=100, |steps/s ratio - 1| <= 0.15"] == (0.175, False)
    assert got["3-step one at a time, fleet server p50 ms <= 12.0"] == (11.0, True)
    assert got["3-step one at a time, fleet server p99 ms <= 25.0"] == (30.0, False)
    assert got["ingest, fleet events/s >= 2500.0"] == (2600.0, True)
    assert got["ingest, fleet p99 ms <= 30.0"] == (31.0, False)
    # Only the router, the shard and Postgres count: 0.55, not met (the projector's would not matter).
    assert got["ingest, CPU ms per event (router + shard + Postgres) <= 0.5"] == (0.55, False)
    assert got["3-step 50 in flight, fleet/Restate wf/s >= 1.3"] == (None, None)  # not measured
    fleet["loop"]["5000"] = loop(10, truncated=True)
    assert {t["target"]: t["met"] for t in targets(report)}["loop n=5000 vs n=100, |steps/s ratio - 1| <= 0.15"] is None
