"""The capacity model's formula (bench/capacity_model.py): replicas = ceil(load x CPU per unit /
(cores per replica x utilisation)), shards divided by the measured efficiency, a Postgres server
per shard."""

from bench.capacity_model import size

CPU = {"api-shard": {"cpu_ms_per_workflow": 10.0, "cpu_ms_per_event": 2.0},
       "router": {"cpu_ms_per_workflow": 2.0, "cpu_ms_per_event": 1.0},
       "shard-postgres": {"cpu_ms_per_workflow": 15.0, "cpu_ms_per_event": 1.0},
       "postgres": {"cpu_ms_per_workflow": 1.0},
       "bench-client": {"cpu_ms_per_workflow": 3.0}}
CORES = {"api-shard": 1.0, "router": 0.5, "shard-postgres": 2.0, "postgres": 1.0}


def test_replicas_follow_the_formula() -> None:
    s = size(CPU, workflows=100, events=0, cores=CORES, utilisation=0.5)
    assert s.cores["api-shard"] == 2.0 and s.cores["router"] == 0.4  # 100 x 10 ms / 0.5
    assert s.replicas["api-shard"] == 2 and s.replicas["router"] == 1
    assert (s.replicas["shard-postgres"], s.cores["shard-postgres"]) == (2, 1.5)  # a server per shard, 3 cores over 2
    assert (s.replicas["postgres"], s.cores["postgres"]) == (1, 0.2)  # the cluster database: one
    assert "bench-client" not in s.replicas  # the load generator is not deployed


def test_events_add_to_workflows_and_efficiency_grows_the_shards() -> None:
    s = size(CPU, workflows=100, events=500, cores=CORES, utilisation=0.5, efficiency=0.8)
    assert s.cores["api-shard"] == (100 * 10 + 500 * 2) / 1000 / 0.8 / 0.5
    assert s.replicas["api-shard"] == 5
    assert s.cores["router"] == (100 * 2 + 500 * 1) / 1000 / 0.5


def test_no_load_still_runs_one_of_each() -> None:
    assert set(size(CPU, 0, 0, cores=CORES).replicas.values()) == {1}
