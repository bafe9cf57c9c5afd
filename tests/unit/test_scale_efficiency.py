"""The scale bench's efficiency: medians of the repeats at each shard count over N x the median at 1."""

from __future__ import annotations

from bench.scale_bench import efficiency, verdict


def run(shards: int, wf: float, events: float, shard_ms: float = 10.0) -> dict:
    cpu = {f"api-shard-{i}": {"cpu_ms_per_workflow": shard_ms / shards, "cpu_ms_per_event": shard_ms / shards}
           for i in range(shards)}
    return {"shards": shards, "three_step": {"wf_per_s": wf, "cpu": cpu}, "ingest": {"events_per_s": events, "cpu": cpu}}


def test_one_noisy_baseline_run_does_not_move_the_ratio():
    runs = [run(1, 8.0, 40.0), run(1, 10.0, 60.0), run(1, 8.2, 42.0),  # medians 8.2 and 42
            run(4, 31.0, 150.0), run(4, 33.0, 160.0), run(4, 40.0, 100.0)]  # medians 33 and 150
    eff = efficiency(runs)
    assert eff["1"]["three_step"] == 1.0 and eff["4"]["repeats"] == 3
    assert eff["4"]["three_step"] == round(33.0 / (4 * 8.2), 3)
    assert eff["4"]["ingest"] == round(150.0 / (4 * 42.0), 3)
    assert eff["4"]["three_step_cpu"] == 1.0  # each shard's cost per workflow did not change


def test_no_baseline_no_efficiency():
    assert efficiency([run(2, 10.0, 50.0)]) == {}


def test_the_verdict_counts_only_the_capped_processes_in_use():
    window = {"machine_busy": 0.1, "cpu": {"router": {"of_cap": 1.0, "cores": 0.05},
                                          "router-1": {"of_cap": 0.05, "cores": 0.0},
                                          "postgres": {"cores": 0.02}}}
    assert "held back" in verdict(window, "router")
    assert "at their CPU cap" in verdict(window, "router", {"router"})
