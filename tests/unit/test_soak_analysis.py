"""The soak's verdicts (bench/soak_analysis.py): slope over the second half, flat or not."""

import random

import pytest

from bench import soak_analysis as an

MEMORY = an.RULES["memory"]
ROWS = an.RULES["rows"]


def line(start: float, per_min: float, minutes: float = 10, step_s: float = 10, noise: float = 0.0,
         seed: int = 1) -> list[tuple[float, float]]:
    rnd = random.Random(seed)
    n = int(minutes * 60 / step_s) + 1
    return [(i * step_s, start + per_min * i * step_s / 60 + rnd.uniform(-noise, noise)) for i in range(n)]


def test_second_half_drops_the_warm_up_and_missing_values():
    pts = [(0, 1.0), (10, 2.0), (20, None), (30, 4.0), (40, 5.0)]
    assert an.second_half(pts) == [(30, 4.0), (40, 5.0)]
    assert an.second_half([]) == []


def test_slope_of_a_line_and_degenerate_inputs():
    assert an.slope([(0, 1), (1, 3), (2, 5)]) == pytest.approx(2.0)
    assert an.slope([(0, 1)]) is None
    assert an.slope([(5, 1), (5, 2)]) is None


def test_slope_ignores_one_outlier():
    pts = [(t, 100.0) for t in range(10)]
    pts[6] = (6, 10_000.0)  # one slow window
    assert an.slope(pts) == pytest.approx(0.0)


def test_steady_memory_with_noise_is_flat():
    v = an.verdict(line(100_000, per_min=0, noise=500), MEMORY)
    assert v["flat"] is True
    assert v["points"] == 31  # t = 300 .. 600 s of a 10-minute run sampled every 10 s


def test_a_leak_of_two_percent_per_minute_is_not_flat():
    v = an.verdict(line(100_000, per_min=2_000, noise=200), MEMORY)
    assert v["flat"] is False
    assert v["slope_per_min"] == pytest.approx(2_000, rel=0.05)
    assert v["slope_pct_of_mean_per_min"] == pytest.approx(v["slope_per_min"] / v["mean"] * 100, rel=1e-2)


def test_warm_up_growth_in_the_first_half_does_not_count():
    pts = [(t, min(t, 300) * 100.0) for t in range(0, 601, 10)]  # grows, then plateaus at half time
    assert an.verdict(pts, MEMORY)["flat"] is True


def test_shrinking_is_flat():
    assert an.verdict(line(100_000, per_min=-5_000), MEMORY)["flat"] is True


def test_absolute_floor_keeps_a_table_near_zero_flat():
    # An outbox hovering around a few rows: 30 rows/min is huge relative to a mean of 5, but under
    # the rows floor (60/min).
    v = an.verdict(line(5, per_min=30, minutes=4), ROWS)
    assert v["flat"] is True and v["tolerance_per_min"] == 60
    assert an.verdict(line(5, per_min=120, minutes=4), ROWS)["flat"] is False


def test_too_few_points_give_no_verdict():
    v = an.verdict([(0, 1.0), (10, 2.0), (20, 3.0)], MEMORY)
    assert v["flat"] is None and v["slope_per_min"] is None


def test_per_execution_growth():
    executions = [(t, 5.0 * t) for t in range(0, 301, 10)]  # 5 executions a second
    events = [(t, 1000 + 31 * 5.0 * t) for t in range(0, 301, 10)]  # 31 rows each
    out = an.per_execution(events, executions)
    assert out["per_execution"] == pytest.approx(31)
    assert out["growth_in_half"] == pytest.approx(31 * 5 * 150)


def test_window_percentiles_nearest_rank():
    assert an.window_percentiles(list(range(1, 101))) == {"p50": 50, "p99": 99}
    assert an.window_percentiles([7.0]) == {"p50": 7.0, "p99": 7.0}
    assert an.window_percentiles([]) == {"p50": None, "p99": None}


def test_summarize_names_what_is_not_flat():
    s = an.summarize({"a": {"flat": True}, "b": {"flat": False}, "c": {"flat": None}})
    assert s == {"not_flat": ["b"], "no_verdict": ["c"], "flat": ["a"]}


def cost_points(marginal_first: float, marginal_second: float, fixed: float = 500.0, minutes: float = 10,
                step_s: float = 10, steady: bool = False) -> list[tuple[float, float, float]]:
    """(t, executions/s, CPU ms/s) windows: throughput swings with the machine's load (unless steady),
    CPU = fixed per second + marginal per execution."""
    out = []
    n = int(minutes * 60 / step_s)
    for i in range(n):
        t = i * step_s
        work = 30.0 if steady else (10.0 + (i * 7 % 5) * 8)  # 10 .. 42 executions/s
        marginal = marginal_first if t < minutes * 30 else marginal_second
        out.append((t, work, fixed + marginal * work))
    return out


CPU = an.RULES["cpu"]


def test_cost_per_execution_is_flat_when_only_throughput_moves():
    # Per-window CPU/execution swings from 70 to 32 ms with throughput; the marginal cost stays 20 ms.
    v = an.cost_drift(cost_points(20.0, 20.0), CPU)
    assert v["flat"] is True and v["method"] == "marginal"
    assert v["first_half"] == pytest.approx(20.0) and v["second_half"] == pytest.approx(20.0)


def test_a_growing_cost_per_execution_is_caught():
    v = an.cost_drift(cost_points(20.0, 30.0), CPU)  # +50 % five minutes later: 10 %/min
    assert v["flat"] is False
    assert v["change_pct_per_min"] == pytest.approx(10.0, rel=0.01)


def test_steady_throughput_falls_back_to_the_ratio():
    v = an.cost_drift(cost_points(20.0, 20.0, steady=True), CPU)
    assert v["method"] == "ratio" and v["flat"] is True
    assert v["first_half"] == pytest.approx((500 + 20 * 30) / 30, abs=1e-3)


def test_cost_drift_needs_enough_windows():
    assert an.cost_drift(cost_points(20.0, 20.0, minutes=1), CPU)["flat"] is None


def test_postgres_is_judged_per_backend_not_by_its_total():
    """The soak's samples: Postgres' total grows with the backends the pools open (24 -> 34 over
    10 minutes, 6.3 MB each, flat); a backend that leaks is caught whatever the count."""
    from bench.soak import memory_verdicts

    def samples(per_backend_per_min: float) -> list[dict]:
        out = []
        for i in range(61):
            backends = 24 + i // 6
            each = 6300 + per_backend_per_min * i / 6
            out.append({"t_s": i * 10.0, "memory_kb": {"router": 50_000, "postgres": int(backends * each)},
                        "postgres": {"backends": backends, "private_kb_per_backend": int(each)}})
        return out

    steady = memory_verdicts(samples(0))
    assert steady["router"]["flat"] is True
    assert steady["postgres_per_backend"]["flat"] is True
    assert steady["postgres_total"]["flat"] is None and steady["postgres_total"]["slope_per_min"] > 0
    assert steady["postgres_total"]["not_judged"] == "follows the backend count, 24 -> 34"
    assert "postgres" not in steady
    assert memory_verdicts(samples(200))["postgres_per_backend"]["flat"] is False  # 3 %/min per backend
