"""The checks of the conformance format (index.json "rules"), as pure functions."""

from __future__ import annotations

from typing import Any


def subset(expected: Any, actual: Any) -> bool:
    """Every key given must match; nested objects recursively; lists exactly (element-wise subset)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and subset(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(expected) == len(actual) and all(
            subset(e, a) for e, a in zip(expected, actual))
    return expected == actual


def failures(fixture: dict[str, Any], status: str, steps: dict[str, Any], issued: dict[str, int],
             sql_rows: list[list[dict[str, Any]]] | None = None, error: Any = None) -> list[str]:
    problems = []
    if status != fixture["status"]:
        problems.append(f"status {status}, expected {fixture['status']}")
    if fixture.get("error") and fixture["error"] not in str(error or ""):
        problems.append(f"error {str(error)[:200]!r} does not contain {fixture['error']!r}")
    for step, expected in (fixture.get("steps") or {}).items():
        if not subset(expected, steps.get(step)):
            problems.append(f"step {step}: {str(steps.get(step))[:200]} does not match {expected}")
    for step, expected in (fixture.get("loops") or {}).items():
        got = (steps.get(step) or {}).get("results") if isinstance(steps.get(step), dict) else None
        if not subset(expected, got):
            problems.append(f"loop {step}: {str(got)[:200]} does not match {expected}")
    for step, count in (fixture.get("loop_count") or {}).items():
        got = (steps.get(step) or {}).get("results") if isinstance(steps.get(step), dict) else None
        if not isinstance(got, list) or len(got) != count:
            problems.append(f"loop {step}: {len(got) if isinstance(got, list) else 'no'} iterations, expected {count}")
    for step in fixture.get("not_run") or []:
        if issued.get(step, 0):
            problems.append(f"{step} ran but must not")
    for step in fixture.get("run_once") or []:
        if issued.get(step, 0) != 1:
            problems.append(f"{step} issued {issued.get(step, 0)} times, expected once")
    for check, rows in zip(fixture.get("sql") or [], sql_rows or []):
        if rows != check["rows"]:
            problems.append(f"sql {check['query'][:80]!r}: {rows} != {check['rows']}")
    return problems
