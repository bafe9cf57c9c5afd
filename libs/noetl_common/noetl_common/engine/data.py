"""Step results and loop data, kept out of the compact `State`.

The State is decoded and re-encoded on every event, so it holds only control data whose size does
not grow with the number of iterations. Everything that does grow (a loop's collection, one result
per iteration, every step's result) lives here. The caller persists each write as a row of its own
(`take_journal` after every start/apply) and keeps the object cached between events; `from_rows`
rebuilds it from those rows.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

import msgspec

from .stored import is_stub


class StepResult(msgspec.Struct, tag=True, frozen=True):
    """A step's final result. A step can finish more than once (cycles, a routed failure after a
    failed loop's aggregate): the last row for a step wins."""

    step: str
    value: Any


class LoopItems(msgspec.Struct, tag=True, frozen=True):
    """Items `offset .. offset+len(items)` of loop run `run`: the whole collection at loop start,
    then one row per cursor frame."""

    step: str
    run: int
    offset: int
    items: list[Any]


class LoopResult(msgspec.Struct, tag=True, frozen=True):
    step: str
    run: int
    index: int
    value: Any


DataWrite = StepResult | LoopItems | LoopResult

# (step, run) -> (items, results by iteration index)
Loops = dict[tuple[str, int], tuple[list[Any], dict[int, Any]]]


class ExecutionData:
    """Step results and the data of running loops, outside the compact State. The engine reads and
    writes it through these methods; every write is journaled so the caller persists exactly what
    changed (one row per write)."""

    def __init__(self, results: dict[str, Any] | None = None, loops: Loops | None = None) -> None:
        self.results: dict[str, Any] = dict(results or {})
        self._loops: Loops = dict(loops or {})
        self._journal: list[DataWrite] = []
        # Whether any result here is a stored one's stub, which a template may need loaded: the
        # caller then gives apply a `resolve` (it need not otherwise). Once set, it stays set.
        self.holds_stored = any(is_stub(v) for v in self.results.values()) or any(
            is_stub(v) for _, results in self._loops.values() for v in results.values())

    # --- engine-facing ---------------------------------------------------------------------------
    def set_result(self, step: str, value: Any) -> None:
        self.results[step] = value
        self.holds_stored = self.holds_stored or is_stub(value)
        self._journal.append(StepResult(step=step, value=value))

    def start_loop(self, step: str, run: int, items: list[Any]) -> None:
        # Copied: the rendered collection may be the workload's own list, and cursor frames extend it.
        # Journaled even when empty, so a loaded copy knows the loop exists (and checksums agree).
        self._loops[(step, run)] = (list(items), {})
        self._journal.append(LoopItems(step=step, run=run, offset=0, items=list(items)))

    def extend_loop(self, step: str, run: int, items: list[Any]) -> None:
        held = self._loops[(step, run)][0]
        self._journal.append(LoopItems(step=step, run=run, offset=len(held), items=list(items)))
        held.extend(items)

    def item(self, step: str, run: int, index: int) -> Any:
        return self._loops[(step, run)][0][index]

    def set_loop_result(self, step: str, run: int, index: int, value: Any) -> None:
        self._loops[(step, run)][1][index] = value
        self.holds_stored = self.holds_stored or is_stub(value)
        self._journal.append(LoopResult(step=step, run=run, index=index, value=value))

    def loop_results(self, step: str, run: int, total: int) -> list[Any]:
        results = self._loops[(step, run)][1]
        return [results.get(i) for i in range(total)]

    def end_loop(self, step: str, run: int) -> None:
        """Forget a finished loop in memory. Not journaled: its rows are history the caller may keep
        or delete; the aggregate the engine needs next is already a StepResult."""
        self._loops.pop((step, run), None)

    def take_journal(self) -> list[DataWrite]:
        journal, self._journal = self._journal, []
        return journal

    # --- loading and comparison ------------------------------------------------------------------
    @classmethod
    def from_rows(cls, results: Iterable[tuple[str, Any]], loop_items: Iterable[tuple[str, int, int, list[Any]]],
                  loop_results: Iterable[tuple[str, int, int, Any]]) -> ExecutionData:
        """Rebuild from persisted rows: `results` as (step, value) in write order (the last per step
        wins); `loop_items` as (step, run, offset, items) in any order; `loop_results` as
        (step, run, index, value). Pass the rows of running loops only (the State's `loops` name them
        by step and `run`): rows of an ended loop would be carried, unused, and count in `checksum`."""
        loops: Loops = {}
        for step, run, offset, items in sorted(loop_items, key=lambda row: (row[0], row[1], row[2])):
            held = loops.setdefault((step, run), ([], {}))[0]
            if offset != len(held):
                raise ValueError(f"loop {step!r} run {run}: items row at offset {offset}, expected {len(held)}")
            held.extend(items)
        for step, run, index, value in loop_results:
            loops.setdefault((step, run), ([], {}))[1][index] = value
        return cls(dict(results), loops)

    def checksum(self) -> str:
        """Canonical over results and running loops (items and results); the journal is not data."""
        loops = [[step, run, items, sorted(results.items())]
                 for (step, run), (items, results) in sorted(self._loops.items(), key=lambda kv: kv[0])]
        canonical = json.dumps(msgspec.to_builtins({"results": self.results, "loops": loops}), sort_keys=True,
                               separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def __repr__(self) -> str:
        return f"ExecutionData(results={sorted(self.results)}, loops={sorted(self._loops)})"
