"""The soak's verdicts, as pure functions of sampled time series (unit-tested in tests/unit).

A series is a list of (t_seconds, value) points, one per sample. Only the **second half** of the
run counts (points with t >= t_first + (t_last - t_first) / 2): the first half is warm-up
(connections, plan caches, import-time allocations, the allocator finding its working set).

Over that half the Theil-Sen estimator gives the slope (the median of the slopes between every
pair of points: one noisy window, a GC pause or a checkpoint, moves it little, unlike a least-squares
line), reported per minute. A metric is **flat** when

    slope_per_min <= max(rel_pct_per_min / 100 * mean, abs_per_min)

with `mean` the mean of the half's values and the two numbers taken from the metric's kind
(`RULES`): memory may grow by less than 1 % of its mean per minute, a bounded table's rows and
bytes by less than 1 % per minute or a small absolute floor (a table that hovers near zero, like
the outbox, is noise in relative terms), a latency percentile by less than 3 % per minute or
0.5 ms per minute; executions finished per window may decline by less than 3 % per minute.
Shrinking is always flat. The fleet's CPU per execution is judged by `cost_drift` (below).
Fewer than `MIN_POINTS` points give no verdict (`flat: None`).

Tables that legitimately grow with the work done (events, commands, ...) are not judged flat or
not: `per_execution` reports their growth per finished execution (the slope of the table against
the count of finished executions over the same half), which must stay constant, not zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

Point = tuple[float, float]
MIN_POINTS = 4


@dataclass(frozen=True)
class Rule:
    rel_pct_per_min: float   # growth allowed per minute, in % of the half's mean
    abs_per_min: float       # ... or this much in the metric's unit, whichever is larger
    unit: str


RULES: dict[str, Rule] = {
    "memory": Rule(rel_pct_per_min=1.0, abs_per_min=0.0, unit="kB"),
    "rows": Rule(rel_pct_per_min=1.0, abs_per_min=60.0, unit="rows"),
    "bytes": Rule(rel_pct_per_min=1.0, abs_per_min=256 * 1024.0, unit="bytes"),
    "latency": Rule(rel_pct_per_min=3.0, abs_per_min=0.5, unit="ms"),
    "cpu": Rule(rel_pct_per_min=3.0, abs_per_min=0.0, unit="ms"),
    # judged on the negated series: a decline of executions finished per window is not flat
    "throughput": Rule(rel_pct_per_min=3.0, abs_per_min=0.0, unit="-executions per window"),
}


def second_half(points: Sequence[Point]) -> list[Point]:
    """The points of the second half of the run, by time; points with a None value are dropped."""
    pts = [(t, v) for t, v in points if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not pts:
        return []
    t0, t1 = points[0][0], points[-1][0]
    middle = t0 + (t1 - t0) / 2
    return [(t, v) for t, v in pts if t >= middle]


def slope(points: Sequence[Point]) -> float | None:
    """Theil-Sen slope of value over x (units of value per unit of x): the median of the slopes
    between every pair of points with different x; None if x never moves."""
    pairs = sorted((y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(points)
                   for x2, y2 in points[i + 1:] if x2 != x1)
    if not pairs:
        return None
    mid = len(pairs) // 2
    return pairs[mid] if len(pairs) % 2 else (pairs[mid - 1] + pairs[mid]) / 2


def verdict(points: Sequence[Point], rule: Rule) -> dict:
    """Slope per minute over the second half and whether it is flat under `rule`."""
    half = second_half(points)
    out: dict = {"points": len(half), "unit": rule.unit}
    s = slope(half) if len(half) >= MIN_POINTS else None
    if s is None:
        return {**out, "slope_per_min": None, "mean": None, "flat": None}
    mean = sum(v for _, v in half) / len(half)
    per_min = s * 60.0
    tolerance = max(rule.rel_pct_per_min / 100.0 * abs(mean), rule.abs_per_min)
    return {**out, "slope_per_min": _r(per_min), "mean": _r(mean),
            "slope_pct_of_mean_per_min": _r(100.0 * per_min / mean) if mean else None,
            "tolerance_per_min": _r(tolerance), "flat": per_min <= tolerance}


def per_execution(values: Sequence[Point], executions: Sequence[Point]) -> dict:
    """Growth of a table per finished execution over the second half: the slope of `values`
    against `executions` (cumulative finished executions), sampled at the same times."""
    by_t = dict(executions)
    pairs = [(by_t[t], v) for t, v in second_half(values) if t in by_t]
    s = slope(pairs) if len(pairs) >= MIN_POINTS else None
    growth = (pairs[-1][1] - pairs[0][1]) if len(pairs) >= 2 else None
    return {"points": len(pairs), "per_execution": _r(s) if s is not None else None,
            "growth_in_half": _r(growth) if growth is not None else None}


def cost_drift(points: Sequence[tuple[float, float, float]], rule: Rule) -> dict:
    """Whether the cost of one unit of work grows over the run. `points` are (t, work per second,
    cost per second) per window, e.g. executions/s and the fleet's CPU ms/s. On a shared machine
    both move with other people's load, and a fleet also spends a fixed amount per second (polling
    loops), so cost/work per window drifts whenever throughput does. The marginal cost (Theil-Sen
    slope of cost against work) separates the two; it is compared between the two halves of the
    run, as a change per minute between the halves' midpoints, against `rule.rel_pct_per_min`.
    When a half's work barely varies (spread under 30 % of its mean) the slope is ill-defined and
    both halves use the plain ratio total cost / total work instead."""
    pts = [(t, w, c) for t, w, c in points if w is not None and c is not None]
    if len(pts) < 2 * MIN_POINTS:
        return {"flat": None, "method": None}
    t0, t1 = pts[0][0], pts[-1][0]
    middle = t0 + (t1 - t0) / 2
    halves = [[p for p in pts if p[0] < middle], [p for p in pts if p[0] >= middle]]
    if min(len(h) for h in halves) < MIN_POINTS:
        return {"flat": None, "method": None}

    def spread(h: list) -> float:
        ws = [w for _, w, _ in h]
        mean = sum(ws) / len(ws)
        return (max(ws) - min(ws)) / mean if mean else 0.0

    marginal = all(spread(h) >= 0.3 for h in halves)
    if marginal:
        costs = [slope([(w, c) for _, w, c in h]) for h in halves]
    else:
        costs = [sum(c for _, _, c in h) / sum(w for _, w, _ in h) if sum(w for _, w, _ in h) else None
                 for h in halves]
    first, second = costs
    if not first or second is None:
        return {"flat": None, "method": "marginal" if marginal else "ratio"}
    minutes = (sum(p[0] for p in halves[1]) / len(halves[1]) - sum(p[0] for p in halves[0]) / len(halves[0])) / 60
    pct_per_min = 100.0 * (second - first) / first / minutes
    return {"method": "marginal" if marginal else "ratio", "first_half": _r(first), "second_half": _r(second),
            "change_pct_per_min": _r(pct_per_min), "tolerance_pct_per_min": rule.rel_pct_per_min,
            "flat": pct_per_min <= rule.rel_pct_per_min}


def window_percentiles(values: Sequence[float], ps: Sequence[float] = (50, 99)) -> dict[str, float | None]:
    """Nearest-rank percentiles (p50 -> key 'p50'); None for an empty window."""
    s = sorted(values)
    out: dict[str, float | None] = {}
    for p in ps:
        if not s:
            out[f"p{p:g}"] = None
            continue
        k = max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))
        out[f"p{p:g}"] = _r(s[k])
    return out


def summarize(verdicts: dict[str, dict]) -> dict:
    """Names of the metrics judged not flat, and of those without a verdict."""
    return {"not_flat": sorted(k for k, v in verdicts.items() if v.get("flat") is False),
            "no_verdict": sorted(k for k, v in verdicts.items() if v.get("flat") is None),
            "flat": sorted(k for k, v in verdicts.items() if v.get("flat") is True)}


def _r(x: float) -> float:
    return round(x, 3) if abs(x) < 1000 else round(x, 1)
