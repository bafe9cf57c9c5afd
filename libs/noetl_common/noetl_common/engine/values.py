"""Values the engine derives from what steps give it: the items a `loop.in` names, a pipeline's
or a child playbook's result, and a JSON-safe copy of a scope."""

from __future__ import annotations

import json
from typing import Any, Callable

import msgspec

from ..dsl.model import Step


def as_items(value: Any) -> list[Any] | None:
    """loop.in: a list; a map iterates {key, value}; a JSON string is parsed; an int n is 0..n-1."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return [{"key": k, "value": v} for k, v in value.items()]
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return list(range(value))
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
                return parsed if isinstance(parsed, list) else None
            except ValueError:
                return None
        return [p.strip() for p in text.replace("\n", ",").split(",") if p.strip()]
    return None


def pipeline_envelope(result: Any) -> dict[str, Any] | None:
    """A pipeline command's outcome as `{result, tasks, ctx_updates}`: this fleet's workers send that;
    NoETL's Python worker runs the same tasks as its `task_sequence` and sends `{status, _prev,
    results, ctx, metrics}` (`ctx` holds only what the tasks set). None for anything else."""
    if not isinstance(result, dict):
        return None
    if "ctx_updates" in result:
        return result
    if "_prev" in result and isinstance(result.get("results"), dict):
        return {"result": result["_prev"], "tasks": result["results"], "ctx_updates": result.get("ctx") or {}}
    return None


STORED_KEYS = ("_ref", "_store")  # a result kept in the result store: its reference and tier


def pipeline_result(envelope: dict[str, Any]) -> Any:
    last = envelope.get("result")
    tasks = {k: v for k, v in (envelope.get("tasks") or {}).items() if isinstance(v, dict)}
    if isinstance(last, dict):
        # Python-era playbooks read a pipeline's tasks as `{{ step.results.<task> }}` too; an
        # envelope kept out of the event log keeps its reference (`{{ step._ref }}`).
        stored = {k: envelope[k] for k in STORED_KEYS if k in envelope}
        return {"results": envelope.get("tasks") or {}, **tasks, **last, **stored}
    return last


def selected(result: Any, fields: tuple[str, ...]) -> Any:
    """`output.output_select` of a result kept in the result store: the named fields and its
    reference; a result kept inline stays whole (NoETL selects only from externalised results)."""
    if not isinstance(result, dict) or "_ref" not in result:
        return result
    return {**{f: result[f] for f in fields if f in result}, **{k: result[k] for k in STORED_KEYS if k in result}}


def child_result(step: Step, payload: Any) -> Any:
    payload = payload or {}
    return_step = step.tool.get("return_step") or step.tool.get("result_step")
    steps = payload.get("steps") or {}
    if return_step and return_step in steps:
        return steps[return_step]
    return {"status": payload.get("status"), "result": payload.get("result")}


def jsonable(value: Any, enc_hook: Callable[[Any], Any] | None = None) -> Any:
    return msgspec.json.decode(msgspec.json.encode(value, enc_hook=enc_hook))
