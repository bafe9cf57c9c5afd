"""YAML (or a mapping) -> Playbook, with errors that name the step and the field.

Every input either parses or raises PlaybookError (a property test feeds it arbitrary
structures): the catalog turns that into a 422, so no document can make registration a 500."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import yaml

from .arcs import parse_arcs
from .errors import PlaybookError, integer, is_template, mapping, type_name
from .loops import parse_loop
from .model import Arc, Playbook, Step
from .tools import KNOWN_KINDS, REQUIRED_FIELDS, normalise, policy_rules

__all__ = ["KNOWN_KINDS", "REQUIRED_FIELDS", "PlaybookError", "ensure_end_step", "parse_playbook"]


def _load(source: str | bytes | dict[str, Any]) -> dict[str, Any]:
    if isinstance(source, dict):
        return source
    try:
        doc = yaml.safe_load(source)
    except Exception as exc:  # YAMLError, and the constructors' ValueError/RecursionError on odd scalars
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


def _step(raw: Any, index: int, workbook: dict[str, dict[str, Any]]) -> Step:
    if not isinstance(raw, dict) or not isinstance(raw.get("step"), str) or not raw["step"]:
        raise PlaybookError(f"workflow[{index}].step is required (a step name)")
    name = raw["step"]
    if raw.get("case") is not None:
        raise PlaybookError(f"step '{name}': case blocks are not supported (legacy); route with next.arcs "
                            "`when` or spec.policy rules")
    tool = raw.get("tool")
    if tool is None:
        if name != "end":
            raise PlaybookError(f"step '{name}': tool is required")
        tool = {"kind": "noop"}  # a bare `end` only marks where the workflow finishes
    step_input = dict(mapping(name, "input", raw.get("input") if raw.get("input") is not None else raw.get("args")))
    arcs, inclusive = parse_arcs(name, raw.get("next"))
    common = dict(name=name, arcs=arcs, inclusive=inclusive, has_next=raw.get("next") is not None,
                  loop=parse_loop(name, raw.get("loop")), when=raw.get("when"),
                  set=dict(mapping(name, "set", raw.get("set"))), output_select=_output_select(name, raw.get("output")))
    tiers = _result_tier(raw.get("output"))
    if isinstance(tool, list):
        return Step(kind="pipeline", tasks=_tasks(name, tool), input=step_input, tool=tiers, **common)
    if not isinstance(tool, dict):
        raise PlaybookError(f"step '{name}': tool must be a mapping or a list of tasks, got {type_name(tool)}")
    config = normalise(name, "tool", tool)
    if config["kind"] == "workbook":
        config = _from_workbook(name, config, workbook)
    if policy_rules(config):  # semantics rule 7: a single tool with a policy is a one-task pipeline
        return Step(kind="pipeline", tasks=[{"name": name, **config}], input=step_input, **common)
    kind = config.pop("kind")
    if tiers and "output" not in config:  # the tool's own `output` wins over the step's
        config = {**config, **tiers}
    tool_input = config.pop("input", {})
    return Step(kind=kind, tool=config, input={**tool_input, **step_input}, retry=_attempts(name, config),
                **common)


def _result_tier(output: Any) -> dict[str, Any]:
    """A step's `output.store` / `inline_max_bytes` (NoETL's result tiers) as the `output` of the
    command's tool config, which the worker that produces the result applies (result_tiers)."""
    if not isinstance(output, dict):
        return {}
    tier = {k: output[k] for k in ("store", "inline_max_bytes") if k in output}
    return {"output": tier} if tier else {}


def _output_select(step: str, output: Any) -> tuple[str, ...]:
    selected = output.get("output_select") if isinstance(output, dict) else None
    if selected is None:
        return ()
    if not isinstance(selected, list) or not all(isinstance(f, str) and f for f in selected):
        raise PlaybookError(f"step '{step}': output.output_select must be a list of field names")
    return tuple(selected)


def _tasks(step: str, tool: list[Any]) -> list[dict[str, Any]]:
    if not tool:
        raise PlaybookError(f"step '{step}': tool list (pipeline) is empty")
    tasks = []
    for i, task in enumerate(tool):
        if isinstance(task, dict) and "kind" not in task and len(task) == 1:  # nested `label: {kind: ...}`
            label, body = next(iter(task.items()))
            task = {"name": label, **mapping(step, f"tool[{i}].{label}", body)}
        config = normalise(step, f"tool[{i}]", task)
        name = config.get("name")
        tasks.append({**config, "name": name if isinstance(name, str) and name else f"task_{i}"})
    return tasks


def _from_workbook(step: str, config: dict[str, Any], workbook: dict[str, dict[str, Any]]) -> dict[str, Any]:
    entry = workbook.get(str(config.get("name")))
    if entry is None:
        raise PlaybookError(f"step '{step}': tool.name '{config.get('name')}' is not a workbook entry")
    base = normalise(step, f"workbook '{entry.get('name')}'.tool", entry.get("tool"))
    if base["kind"] == "workbook":
        raise PlaybookError(f"step '{step}': workbook '{entry.get('name')}' refers to another workbook entry")
    return {**base, "input": {**base.get("input", {}), **config.get("input", {})}}


def _attempts(step: str, config: dict[str, Any]) -> int:
    retry = config.get("retry")
    if not isinstance(retry, dict):
        return 1
    value = retry.get("max_attempts", retry.get("attempts", 1))
    if is_template(value):
        return 1  # NoETL renders it per run; a fixed count is all the engine takes, so one attempt
    return max(integer(step, "tool.retry.max_attempts", value, minimum=0), 1)


def _entry(doc: dict[str, Any], steps: dict[str, Step], order: list[str]) -> str:
    """NoETL's rule (canonical v2, `workflow_entry_routing_termination_v2`): `executor.spec.entry_step`
    when given; else the step named `start` (what every Rust-era playbook has, wherever it sits);
    else the first step of the workflow."""
    executor = mapping(None, "executor", doc.get("executor"))
    chosen = mapping(None, "executor.spec", executor.get("spec")).get("entry_step")
    if chosen is not None:
        if not isinstance(chosen, str) or chosen not in steps:
            raise PlaybookError(f"executor.spec.entry_step {chosen!r} is not a step of this playbook")
        return chosen
    return "start" if "start" in steps else order[0]


def parse_playbook(source: str | bytes | dict[str, Any]) -> Playbook:
    doc = _load(source)
    workflow = doc.get("workflow")
    if not isinstance(workflow, list) or not workflow:
        raise PlaybookError("workflow is required: a non-empty list of steps")
    raw_workbook = doc.get("workbook")
    if raw_workbook is not None and not isinstance(raw_workbook, list):
        raise PlaybookError(f"workbook must be a list of named tools, got {type_name(raw_workbook)}")
    workbook = {str(w.get("name")): w for w in raw_workbook or [] if isinstance(w, dict)}
    steps: dict[str, Step] = {}
    order = []
    for i, raw in enumerate(workflow):
        step = _step(raw, i, workbook)
        if step.name in steps:
            raise PlaybookError(f"step '{step.name}': duplicate step name (workflow[{i}])")
        steps[step.name] = step
        order.append(step.name)
    entry = _entry(doc, steps, order)
    for step in steps.values():
        for i, arc in enumerate(step.arcs):
            if arc.step not in steps:
                raise PlaybookError(f"step '{step.name}': next.arcs[{i}].step '{arc.step}' is not a step of this playbook")
    # Implicit routing: a step other than `end` with no `next` goes to `end` when there is one.
    if "end" in steps:
        for name, step in list(steps.items()):
            if name != "end" and not step.arcs and not step.has_next:
                steps[name] = msgspec.structs.replace(step, arcs=(Arc(step="end"),))
    predecessors, reachable = _graph(steps, entry)
    warnings = tuple(f"step '{n}' is unreachable from '{entry}'" for n in order if n not in reachable)
    meta = mapping(None, "metadata", doc.get("metadata"))
    return Playbook(path=str(meta.get("path") or meta.get("name") or doc.get("path") or "unknown"),
                    name=str(meta.get("name") or ""), workload=dict(mapping(None, "workload", doc.get("workload"))),
                    steps=steps, order=tuple(order), predecessors=predecessors, warnings=warnings, entry=entry)


def _graph(steps: dict[str, Step], entry: str) -> tuple[dict[str, tuple[str, ...]], set[str]]:
    """Forward-arc predecessors (DFS from the entry; an arc to a step on the current path is a
    back-edge). Iterative: a workflow may chain thousands of steps, deeper than Python's stack."""
    preds: dict[str, list[str]] = {n: [] for n in steps}
    seen: set[str] = {entry}
    on_path: set[str] = {entry}
    stack: list[tuple[str, int]] = [(entry, 0)]
    while stack:
        name, i = stack[-1]
        arcs = steps[name].arcs
        if i == len(arcs):
            stack.pop()
            on_path.discard(name)
            continue
        stack[-1] = (name, i + 1)
        target = arcs[i].step
        if target in on_path:
            continue  # back-edge: a loop, not a fan-in
        if name not in preds[target]:
            preds[target].append(name)
        if target not in seen:
            seen.add(target)
            on_path.add(target)
            stack.append((target, 0))
    return {n: tuple(p) for n, p in preds.items()}, seen
