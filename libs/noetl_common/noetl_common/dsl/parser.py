"""YAML (or a mapping) -> Playbook, with errors that name the step and the field."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from .model import Arc, Loop, Playbook, Step

KNOWN_KINDS = {"python", "http", "postgres", "duckdb", "playbook", "workbook", "noop", "shell", "snowflake",
               "ducklake", "nats", "container", "artifact", "transfer", "subscription", "script", "agent",
               "iterator", "secrets", "gcs", "mcp", "task_sequence"}
# Kinds whose config must carry the statement/code to run (checked at registration).
REQUIRED_FIELDS = {"postgres": ("command", "query", "sql"), "duckdb": ("command", "query", "sql"),
                   "python": ("code", "script"), "http": ("url", "endpoint")}
TOOL_META = {"kind", "name", "input", "args", "spec", "set", "desc"}


class PlaybookError(ValueError):
    """The playbook is not runnable; the message says where and why."""


def _load(source: str | bytes | dict[str, Any]) -> dict[str, Any]:
    if isinstance(source, dict):
        return source
    try:
        doc = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        raise PlaybookError(f"invalid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise PlaybookError("a playbook must be a YAML mapping")
    return doc


def ensure_end_step(doc: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """NoETL adds an `end` step when the workflow has none (semantics rule 2)."""
    workflow = doc.get("workflow")
    if not isinstance(workflow, list) or any(isinstance(s, dict) and str(s.get("step", "")).lower() == "end"
                                             for s in workflow):
        return doc, False
    out = copy.deepcopy(doc)
    out["workflow"].append({"step": "end", "desc": "Implicit end step (added at registration)",
                            "tool": {"kind": "python", "code": "result = {'status': 'aggregated'}"}})
    return out, True


def _arcs(step: str, raw: Any) -> tuple[tuple[Arc, ...], bool]:
    """All `next` shapes -> (arcs, inclusive)."""
    if raw is None:
        return (), False
    if isinstance(raw, str):
        return (Arc(step=raw),), False
    inclusive = False
    items: Any = raw
    if isinstance(raw, dict):
        spec = raw.get("spec") or {}
        inclusive = str(spec.get("mode") or spec.get("next_mode") or "exclusive").lower() == "inclusive"
        items = raw.get("arcs", [])
    elif isinstance(raw, list) and all(isinstance(i, str) for i in raw):
        return tuple(Arc(step=i) for i in raw), True  # `next: [a, b]`: every target fires
    if not isinstance(items, list):
        raise PlaybookError(f"step '{step}': next.arcs must be a list")
    if any(isinstance(i, dict) and ("then" in i or "else" in i) for i in items):
        return _when_then_else(step, items), True
    arcs = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            arcs.append(Arc(step=item))
            continue
        if not isinstance(item, dict) or not isinstance(item.get("step"), str):
            raise PlaybookError(f"step '{step}': next.arcs[{i}].step is required")
        arcs.append(Arc(step=item["step"], when=item.get("when"), set=dict(item.get("set") or item.get("args") or {})))
    return tuple(arcs), inclusive


def _when_then_else(step: str, items: list[Any]) -> tuple[Arc, ...]:
    """The older `next: [{when, then: [...]}, ..., {else: [...]}]`: the first true `when` fires all
    its `then` targets, none true fires `else`. Written as inclusive arcs whose conditions exclude
    the earlier branches, so one branch fires, with every target in it."""
    arcs: list[Arc] = []
    earlier: list[str] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not ("then" in item or "else" in item):
            raise PlaybookError(f"step '{step}': next[{i}] mixes `when/then/else` with other arc shapes; "
                                "use one form")
        if "then" in item:
            cond = _expression(step, i, item.get("when", True))
            when = " and ".join([f"({cond})", *(f"not ({e})" for e in earlier)])
            earlier.append(cond)
            targets = item["then"]
        else:
            when = " and ".join(f"not ({e})" for e in earlier) or "true"
            targets = item["else"]
        for j, target in enumerate(targets if isinstance(targets, list) else [targets]):
            name = target if isinstance(target, str) else target.get("step") if isinstance(target, dict) else None
            if not isinstance(name, str):
                raise PlaybookError(f"step '{step}': next[{i}] target {j} needs a step name")
            extra = target if isinstance(target, dict) else {}
            arcs.append(Arc(step=name, when="{{ " + when + " }}",
                            set=dict(extra.get("set") or extra.get("args") or extra.get("data") or
                                     extra.get("with") or {})))
    return tuple(arcs)


def _expression(step: str, i: int, cond: Any) -> str:
    """A condition as a bare expression: `{{ x > 1 }}` -> `x > 1`; text without `{{` is one already."""
    if isinstance(cond, bool):
        return "true" if cond else "false"
    text = str(cond).strip()
    if "{{" not in text:
        return text
    if text.startswith("{{") and text.endswith("}}") and text.count("{{") == 1:
        return text[2:-2].strip()
    raise PlaybookError(f"step '{step}': next[{i}].when must be one expression to combine with other branches, "
                        f"got {cond!r}")


def _loop(step: str, raw: Any) -> Loop | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise PlaybookError(f"step '{step}': loop must be a mapping with `in` and `iterator`")
    spec = raw.get("spec") or {}
    mode = str(spec.get("mode") or raw.get("mode") or ("cursor" if "cursor" in raw else "sequential")).lower()
    if mode not in ("sequential", "parallel", "cursor"):
        raise PlaybookError(f"step '{step}': loop.spec.mode must be sequential, parallel or cursor, got {mode!r}")
    if mode == "cursor":
        return _cursor_loop(step, raw, spec)
    if "in" not in raw:
        raise PlaybookError(f"step '{step}': loop.in is required")
    cap = spec.get("max_in_flight", raw.get("max_in_flight", 0)) or 0
    if not isinstance(cap, int) or cap < 0:
        raise PlaybookError(f"step '{step}': loop.spec.max_in_flight must be a non-negative integer")
    return Loop(collection=raw["in"], iterator=str(raw.get("iterator") or "item"), mode=mode, max_in_flight=cap)


def _cursor_loop(step: str, raw: dict[str, Any], spec: dict[str, Any]) -> Loop:
    """Cursor mode: no `in:`; `cursor.claim` (a tool command, postgres by default) leases a frame of
    rows, the step runs once per claimed row, and the claim runs again until it returns none."""
    cursor = raw.get("cursor")
    if not isinstance(cursor, dict) or not isinstance(cursor.get("claim"), str) or not cursor["claim"].strip():
        raise PlaybookError(f"step '{step}': loop.cursor.claim (the SQL that leases a frame of rows) is required "
                            "in cursor mode")
    kind = str(cursor.get("kind") or "postgres")
    if kind not in KNOWN_KINDS:
        raise PlaybookError(f"step '{step}': loop.cursor.kind '{kind}' is not a known tool kind")
    frame = spec.get("frame") or raw.get("frame") or {}
    if not isinstance(frame, dict):
        raise PlaybookError(f"step '{step}': loop.spec.frame must be a mapping")
    rows = _positive_int(step, "loop.spec.frame.max_rows", frame.get("max_rows", 1))
    concurrency = _positive_int(step, "loop.spec.frame.row_concurrency",
                                frame.get("row_concurrency", spec.get("max_in_flight", 1) or 1))
    return Loop(collection=None, iterator=str(raw.get("iterator") or "item"), mode="cursor",
                max_in_flight=concurrency, cursor={**cursor, "kind": kind}, frame_rows=rows)


def _positive_int(step: str, field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PlaybookError(f"step '{step}': {field} must be a positive integer, got {value!r}")
    return value


def _check_tool(step: str, where: str, tool: dict[str, Any]) -> str:
    kind = tool.get("kind")
    if not isinstance(kind, str) or not kind:
        raise PlaybookError(f"step '{step}': {where}.kind is required")
    if kind not in KNOWN_KINDS:
        raise PlaybookError(f"step '{step}': {where}.kind '{kind}' is not a known tool kind")
    fields = REQUIRED_FIELDS.get(kind)
    if fields and not any(tool.get(f) for f in fields):
        raise PlaybookError(f"step '{step}': {where} of kind {kind} needs one of: {', '.join(fields)}")
    return kind


def _step(raw: Any, index: int, workbook: dict[str, dict[str, Any]]) -> Step:
    if not isinstance(raw, dict) or not isinstance(raw.get("step"), str) or not raw["step"]:
        raise PlaybookError(f"workflow[{index}].step is required (a step name)")
    name = raw["step"]
    if raw.get("case") is not None:
        raise PlaybookError(f"step '{name}': case blocks are not supported (legacy); route with next.arcs "
                            "`when` or spec.policy rules")
    tool = raw.get("tool")
    if tool is None:
        raise PlaybookError(f"step '{name}': tool is required")
    step_input = dict(raw.get("input") or raw.get("args") or {})
    arcs, inclusive = _arcs(name, raw.get("next"))
    common = dict(name=name, arcs=arcs, inclusive=inclusive, has_next=raw.get("next") is not None,
                  loop=_loop(name, raw.get("loop")), when=raw.get("when"), set=dict(raw.get("set") or {}))
    if isinstance(tool, list):
        if not tool:
            raise PlaybookError(f"step '{name}': tool list (pipeline) is empty")
        tasks = []
        for i, task in enumerate(tool):
            if isinstance(task, dict) and "kind" not in task and len(task) == 1:  # nested `label: {kind: ...}`
                label, body = next(iter(task.items()))
                task = {"name": label, **(body or {})}
            if not isinstance(task, dict):
                raise PlaybookError(f"step '{name}': tool[{i}] must be a mapping")
            _check_tool(name, f"tool[{i}]", task)
            tasks.append({"name": task.get("name") or f"task_{i}", **task})
        return Step(kind="pipeline", tasks=tasks, input=step_input, **common)
    if not isinstance(tool, dict):
        raise PlaybookError(f"step '{name}': tool must be a mapping or a list of tasks")
    kind = _check_tool(name, "tool", tool)
    if kind == "workbook":
        entry = workbook.get(str(tool.get("name")))
        if entry is None:
            raise PlaybookError(f"step '{name}': tool.name '{tool.get('name')}' is not a workbook entry")
        base = dict(entry.get("tool") or {})
        merged_input = {**(base.get("input") or base.get("args") or {}), **(tool.get("input") or tool.get("args") or {})}
        tool = {**base, "input": merged_input}
        kind = _check_tool(name, f"workbook '{entry.get('name')}'.tool", tool)
    tool_input = dict(tool.get("input") or tool.get("args") or {})
    config = {k: v for k, v in tool.items() if k not in ("kind", "input", "args")}
    policy = ((tool.get("spec") or {}).get("policy") or {}).get("rules")
    if policy:  # semantics rule 7: a single tool with a policy is a one-task pipeline
        task = {"name": name, **tool}
        return Step(kind="pipeline", tasks=[task], input={**step_input}, **common)
    retry = tool.get("retry") or {}
    declared: Any = retry.get("max_attempts", retry.get("attempts", 1)) if isinstance(retry, dict) else 1
    attempts = int(declared)
    return Step(kind=kind, tool=config, input={**tool_input, **step_input}, retry=max(attempts, 1), **common)


def parse_playbook(source: str | bytes | dict[str, Any]) -> Playbook:
    doc = _load(source)
    workflow = doc.get("workflow")
    if not isinstance(workflow, list) or not workflow:
        raise PlaybookError("workflow is required: a non-empty list of steps")
    workbook = {str(w.get("name")): w for w in doc.get("workbook") or [] if isinstance(w, dict)}
    steps: dict[str, Step] = {}
    order = []
    for i, raw in enumerate(workflow):
        step = _step(raw, i, workbook)
        if step.name in steps:
            raise PlaybookError(f"step '{step.name}': duplicate step name (workflow[{i}])")
        steps[step.name] = step
        order.append(step.name)
    if "start" not in steps:
        raise PlaybookError("workflow has no 'start' step")
    for step in steps.values():
        for i, arc in enumerate(step.arcs):
            if arc.step not in steps:
                raise PlaybookError(f"step '{step.name}': next.arcs[{i}].step '{arc.step}' is not a step of this playbook")
    # Implicit routing: a step other than `end` with no `next` goes to `end` when there is one.
    if "end" in steps:
        for name, step in list(steps.items()):
            if name != "end" and not step.arcs and not step.has_next:
                steps[name] = msgspec_replace(step, arcs=(Arc(step="end"),))
    predecessors, reachable = _graph(steps)
    warnings = tuple(f"step '{n}' is unreachable from 'start'" for n in order if n not in reachable)
    meta = doc.get("metadata") or {}
    return Playbook(path=str(meta.get("path") or meta.get("name") or doc.get("path") or "unknown"),
                    name=str(meta.get("name") or ""), workload=dict(doc.get("workload") or {}), steps=steps,
                    order=tuple(order), predecessors=predecessors, warnings=warnings)


def msgspec_replace(step: Step, **changes: Any) -> Step:
    import msgspec
    return msgspec.structs.replace(step, **changes)


def _graph(steps: dict[str, Step]) -> tuple[dict[str, tuple[str, ...]], set[str]]:
    """Forward-arc predecessors (DFS from start; an arc to a step on the current path is a back-edge)."""
    preds: dict[str, list[str]] = {n: [] for n in steps}
    seen: set[str] = set()
    on_path: set[str] = set()

    def visit(name: str) -> None:
        seen.add(name)
        on_path.add(name)
        for arc in steps[name].arcs:
            if arc.step in on_path:
                continue  # back-edge: a loop, not a fan-in
            if name not in preds[arc.step]:
                preds[arc.step].append(name)
            if arc.step not in seen:
                visit(arc.step)
        on_path.discard(name)

    visit("start")
    return {n: tuple(p) for n, p in preds.items()}, seen
