"""`loop:` blocks: collection loops (sequential/parallel) and cursor loops."""

from __future__ import annotations

from typing import Any

from .errors import PlaybookError, integer, is_template, mapping
from .model import Loop
from .tools import KNOWN_KINDS


def parse_loop(step: str, raw: Any) -> Loop | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise PlaybookError(f"step '{step}': loop must be a mapping with `in` and `iterator`")
    spec = mapping(step, "loop.spec", raw.get("spec"))
    mode = str(spec.get("mode") or raw.get("mode") or ("cursor" if "cursor" in raw else "sequential")).lower()
    if mode not in ("sequential", "parallel", "cursor"):
        raise PlaybookError(f"step '{step}': loop.spec.mode must be sequential, parallel or cursor, got {mode!r}")
    iterator = raw.get("iterator") or "item"
    if not isinstance(iterator, str):
        raise PlaybookError(f"step '{step}': loop.iterator must be a name, got {iterator!r}")
    if mode == "cursor":
        return _cursor_loop(step, raw, spec, iterator)
    if "in" not in raw:
        raise PlaybookError(f"step '{step}': loop.in is required")
    cap = spec.get("max_in_flight", raw.get("max_in_flight", 0)) or 0
    if is_template(cap):
        # Rendered when the loop starts (`concurrent_batches` from the workload, say); the engine
        # fails the step naming this field if it does not render to a non-negative integer.
        return Loop(collection=raw["in"], iterator=iterator, mode=mode, max_in_flight_expr=str(cap))
    cap = integer(step, "loop.spec.max_in_flight", cap, minimum=0)
    return Loop(collection=raw["in"], iterator=iterator, mode=mode, max_in_flight=cap)


def _cursor_loop(step: str, raw: dict[str, Any], spec: dict[str, Any], iterator: str) -> Loop:
    """Cursor mode: no `in:`; `cursor.claim` (a tool command, postgres by default) leases a frame of
    rows, the step runs once per claimed row, and the claim runs again until it returns none."""
    cursor = raw.get("cursor")
    if not isinstance(cursor, dict) or not isinstance(cursor.get("claim"), str) or not cursor["claim"].strip():
        raise PlaybookError(f"step '{step}': loop.cursor.claim (the SQL that leases a frame of rows) is required "
                            "in cursor mode")
    kind = cursor.get("kind") or "postgres"
    if not isinstance(kind, str) or kind not in KNOWN_KINDS:
        raise PlaybookError(f"step '{step}': loop.cursor.kind {kind!r} is not a known tool kind")
    frame = mapping(step, "loop.spec.frame", spec.get("frame") or raw.get("frame"))
    rows = integer(step, "loop.spec.frame.max_rows", frame.get("max_rows", 1), minimum=1)
    concurrency = integer(step, "loop.spec.frame.row_concurrency",
                          frame.get("row_concurrency", spec.get("max_in_flight", 1) or 1), minimum=1)
    process = frame.get("process", "row")
    if not isinstance(process, str) or process.strip().lower() not in ("row", "frame"):
        raise PlaybookError(f"step '{step}': loop.spec.frame.process must be row or frame, got {process!r}")
    for field in ("lease_seconds", "heartbeat_seconds"):
        value = frame.get(field)
        # a template is rendered (and checked) when the loop opens its stage
        if value is not None and not is_template(value) and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            raise PlaybookError(f"step '{step}': loop.spec.frame.{field} must be a positive number, got {value!r}")
    frames = dict(frame) if process.strip().lower() == "frame" else None
    return Loop(collection=None, iterator=iterator, mode="cursor", max_in_flight=concurrency,
                cursor={**cursor, "kind": kind}, frame_rows=rows, frames=frames)
