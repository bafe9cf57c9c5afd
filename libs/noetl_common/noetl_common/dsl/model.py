"""The parsed playbook. Tool configs stay as plain dicts: they are rendered and handed to workers,
which own their meaning."""

from __future__ import annotations

from typing import Any

import msgspec


class Arc(msgspec.Struct, frozen=True):
    step: str
    when: Any = None          # template/bool; None = always
    set: dict[str, Any] = {}


class Loop(msgspec.Struct, frozen=True):
    collection: Any           # template or literal (None in cursor mode)
    iterator: str = "item"
    mode: str = "sequential"  # sequential | parallel | cursor
    max_in_flight: int = 0    # 0 = no cap; cursor mode: rows of one frame run at once
    max_in_flight_expr: str | None = None  # a template for the cap, rendered when the loop starts
    cursor: dict[str, Any] | None = None  # cursor mode: {kind, auth, claim, ...}, the claim tool
    frame_rows: int = 1       # cursor mode: rows claimed per frame (`__frame_max_rows`)
    # cursor mode, `spec.frame.process: frame`: the policy as written (templates unrendered). Such a
    # loop runs on NoETL's frames runtime: one stage per loop run, each claim one frame (one command
    # over all its rows) that its worker leases, heartbeats and commits.
    frames: dict[str, Any] | None = None


class Step(msgspec.Struct, frozen=True):
    name: str
    kind: str                 # tool kind; "pipeline" for a task list; "playbook" for a sub-playbook
    tool: dict[str, Any] = {}                 # single tool config (kind removed); a pipeline: its `output` tier
    tasks: list[dict[str, Any]] | None = None  # pipeline tasks
    input: dict[str, Any] = {}
    arcs: tuple[Arc, ...] = ()
    inclusive: bool = False
    has_next: bool = False
    loop: Loop | None = None
    when: Any = None
    set: dict[str, Any] = {}
    retry: int = 1            # attempts the engine allows the command (tool-level retry)
    # `output.output_select`: the fields the engine keeps of a result kept out of the event log
    # (with its `_ref`), NoETL's way of keeping a large result out of every later render scope.
    output_select: tuple[str, ...] = ()


class Playbook(msgspec.Struct, frozen=True):
    path: str
    name: str
    workload: dict[str, Any]
    steps: dict[str, Step]
    order: tuple[str, ...]
    predecessors: dict[str, tuple[str, ...]]  # forward arcs only (loop back-edges excluded)
    warnings: tuple[str, ...] = ()
    entry: str = "start"      # the step an execution starts with (parser._entry)
