"""`noetl_ops scale --k8s` through the official Kubernetes client against the fake API (see
fakes.py): the order of patches and epoch commits, re-runs that finish a half-done scale, drain
before removal, and the errors an operator sees."""

from __future__ import annotations

import json

from noetl_ops.cli import main
from noetl_ops.errors import EXIT_DRAINING


def steps(cluster, kinds=("patch", "commit")):
    return [entry for entry in cluster.log if entry[0] in kinds]


def test_grow_dev_starts_databases_then_shards_then_commits(fake, capsys):
    cluster, _, args = fake(shards=2, postgres=True)
    assert main(["scale", "--shards", "3", "--grace-ms", "0", *args]) == 0
    # Postgres first (a shard migrates its database at start), then the shard, and the epoch only
    # once every shard of it is ready.
    assert steps(cluster) == [("patch", "postgres-shard", 3), ("patch", "api-shard", 3), ("commit", 3, (0, 1, 2))]
    assert [e.shard_count for e in cluster.epochs] == [2, 3]
    out = capsys.readouterr().out
    assert "postgres-shard-2: ready" in out and "api-shard-2: ready" in out
    assert "grow epoch committed: 3 shards" in out and "done: 3 shards" in out


def test_grow_prod_has_no_postgres_to_scale(fake):
    cluster, _, args = fake(shards=2, postgres=False)
    assert main(["scale", "--shards", "4", *args]) == 0
    assert steps(cluster) == [("patch", "api-shard", 4), ("commit", 4, (0, 1, 2, 3))]


def test_rerun_of_a_grow_stopped_before_the_commit_only_commits(fake, capsys):
    # The pods were scaled and became ready, then the CLI died: replicas 3, map still 2.
    cluster, _, args = fake(shards=3, postgres=True, epochs=[2])
    assert main(["scale", "--shards", "3", *args]) == 0
    assert steps(cluster) == [("commit", 3, (0, 1, 2))]
    # And once more: nothing left to do, nothing is patched or committed.
    cluster.log.clear()
    assert main(["scale", "--shards", "3", *args]) == 0
    assert steps(cluster) == []
    assert "already has 3 shards" in capsys.readouterr().out


def test_shrink_commits_the_drain_epoch_then_waits_for_drained_then_removes(fake, capsys):
    cluster, _, args = fake(shards=3, postgres=True)
    cluster.running[2] = 3  # shard 2 still runs three executions
    assert main(["scale", "--shards", "2", "--grace-ms", "0", *args]) == 0
    assert steps(cluster) == [("commit", 2, (0, 1)), ("patch", "api-shard", 2), ("patch", "postgres-shard", 2)]
    assert cluster.running[2] == 0  # removed only after its executions ended
    assert "api-shard-2" not in cluster.pods and "postgres-shard-2" not in cluster.pods
    out = capsys.readouterr().out
    assert "shard 2: draining: 2 running" in out and "shard 2: drained" in out


def test_shrink_not_drained_stops_with_exit_3_and_a_rerun_finishes(fake, capsys):
    cluster, _, args = fake(shards=3, postgres=False)
    cluster.running[2] = 50
    assert main(["scale", "--shards", "2", "--grace-ms", "0", "--drain-timeout", "0", *args]) == EXIT_DRAINING
    assert steps(cluster) == [("commit", 2, (0, 1))]  # drain epoch committed, replicas untouched
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "re-run `scale --shards 2`" in err
    # The re-run derives what is left (replicas 3 > 2, map at 2): no new commit, waits, removes.
    cluster.running[2] = 1
    cluster.log.clear()
    assert main(["scale", "--shards", "2", *args]) == 0
    assert steps(cluster) == [("patch", "api-shard", 2)]


def test_shrink_waits_for_projection_lag_too(fake, capsys):
    cluster, _, args = fake(shards=3, postgres=False)
    cluster.lag[2] = 7.0
    assert main(["scale", "--shards", "2", "--grace-ms", "0", "--drain-timeout", "0", *args]) == EXIT_DRAINING
    assert "projection lag 7" in capsys.readouterr().out
    cluster.lag[2] = 0.0
    assert main(["scale", "--shards", "2", *args]) == 0
    assert ("patch", "api-shard", 2) in steps(cluster)


def test_force_removes_shards_that_are_not_drained(fake):
    cluster, _, args = fake(shards=3, postgres=False)
    cluster.running[2] = 1000
    assert main(["scale", "--shards", "2", "--grace-ms", "0", "--drain-timeout", "0", "--force", *args]) == 0
    assert steps(cluster) == [("commit", 2, (0, 1)), ("patch", "api-shard", 2)]


def test_a_pod_that_does_not_start_blocks_the_commit_and_is_named(fake, capsys):
    cluster, _, args = fake(shards=2, postgres=False)
    cluster.broken["api-shard-2"] = "CrashLoopBackOff"
    assert main(["scale", "--shards", "3", "--ready-timeout", "0", *args]) == 1
    assert not [e for e in cluster.log if e[0] == "commit"]
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "api-shard-2 CrashLoopBackOff (no DSN for shard)" in err and "re-run" in err


def test_status_rows_from_pods_router_and_projector(fake, capsys):
    cluster, _, args = fake(shards=3, postgres=True)
    cluster.running.update({0: 2, 1: 1})
    cluster.lag[1] = 4.0
    assert main(["status", "--json", *args]) == 0
    rows = {r["shard"]: r for r in json.loads(capsys.readouterr().out)["shards"]}
    assert sorted(rows) == [0, 1, 2]
    assert [rows[i]["ready"] for i in range(3)] == [True, True, True]
    assert [rows[i]["running"] for i in range(3)] == [2, 1, 0]
    assert rows[1]["lag"] == 4.0 and rows[0]["lag"] is None
    assert {r["state"] for r in rows.values()} == {"active"}
    assert ("proxy", "projector-0:8092") in cluster.log
    assert main(["status", *args]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["SHARD", "READY", "EPOCH", "RUNNING", "TOTAL", "OUTBOX", "LAG", "STATE"]
    assert len(table) == 5 and table[-1] == "3 shards in force"


def test_status_shows_a_draining_shard_and_what_it_still_holds(fake, capsys):
    cluster, _, args = fake(shards=3, postgres=False)
    cluster.running[2] = 50
    assert main(["scale", "--shards", "2", "--grace-ms", "0", "--drain-timeout", "0", *args]) == EXIT_DRAINING
    capsys.readouterr()
    assert main(["status", "--json", *args]) == 0
    status = json.loads(capsys.readouterr().out)
    rows = {r["shard"]: r for r in status["shards"]}
    assert status["shard_count_now"] == 2 and sorted(rows) == [0, 1, 2]
    assert [rows[i]["state"] for i in range(3)] == ["active", "active", "draining"]
    assert rows[2]["running"] > 0 and rows[2]["epoch"] == "2"
