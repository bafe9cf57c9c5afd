"""Every `next:` shape -> arcs."""

from __future__ import annotations

from typing import Any

from .errors import PlaybookError, mapping
from .model import Arc


def parse_arcs(step: str, raw: Any) -> tuple[tuple[Arc, ...], bool]:
    """All `next` shapes -> (arcs, inclusive)."""
    if raw is None:
        return (), False
    if isinstance(raw, str):
        return (Arc(step=raw),), False
    inclusive = False
    items: Any = raw
    if isinstance(raw, dict):
        spec = mapping(step, "next.spec", raw.get("spec"))
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
        arcs.append(Arc(step=item["step"], when=item.get("when"), set=_arc_set(step, f"next.arcs[{i}]", item)))
    return tuple(arcs), inclusive


def _arc_set(step: str, where: str, item: dict[str, Any]) -> dict[str, Any]:
    for key in ("set", "args", "data", "with"):
        if item.get(key) is not None:
            return dict(mapping(step, f"{where}.{key}", item[key]))
    return {}


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
            arcs.append(Arc(step=name, when="{{ " + when + " }}", set=_arc_set(step, f"next[{i}] target {j}", extra)))
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
