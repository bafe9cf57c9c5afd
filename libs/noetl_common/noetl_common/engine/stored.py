"""Results kept in the result store, as the execution's data holds them and as templates read them.

A result the control plane moved to the result store reaches the engine whole, with NoETL's
`_ref`/`_store` keys (noetl_api_shard.execution.step_results). The engine uses it whole for the
event that brought it (its `set:`, its arcs), then keeps only a compact stub in ExecutionData: the
reference and the small top-level fields. So a loop's aggregate, a later command's render context
and the data rows stay small however large the results are (NoETL's state keeps references and
scalars the same way, its TaskResultProxy loading the rest on demand).

Templates read a stub through `dsl.lazy.StoredView`: a kept field answers at once, any other field loads
the whole value once per engine call through the caller's `resolve` (NoETL resolves lazily too).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

from .values import STORED_KEYS, pipeline_envelope, pipeline_result

# What a stub keeps besides `_ref`/`_store`: top-level fields up to this size each, this much in all.
FIELD_BYTES = 1024
STUB_BYTES = 4096

# reference (the `_ref` mapping) -> the stored value, or None when it cannot be loaded
Resolve = Callable[[Mapping[str, Any]], Any]


def is_stub(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("_ref"), dict)


def compact(value: Any) -> Any:
    """The stub ExecutionData keeps of a stored result; any other value as it is."""
    if not is_stub(value):
        return value
    kept: dict[str, Any] = {}
    room = STUB_BYTES
    for key, field in value.items():
        if key in STORED_KEYS:
            continue
        size = _size_within(field, min(FIELD_BYTES, room))
        if size is not None:
            kept[key] = field
            room -= size
    kept.update((k, value[k]) for k in STORED_KEYS if k in value)
    return kept


def _size_within(value: Any, limit: int) -> int | None:
    """Roughly the JSON size of `value`, or None as soon as it exceeds `limit` (a large field is
    never walked whole)."""
    if value is None or isinstance(value, (bool, int, float)):
        return 8 if limit >= 8 else None
    if isinstance(value, str):
        return len(value) + 2 if len(value) + 2 <= limit else None
    if isinstance(value, (list, dict)):
        total = 2
        items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
        for key, item in items:
            total += (len(key) + 4 if isinstance(key, str) else 1)
            if total > limit:
                return None
            size = _size_within(item, limit - total)
            if size is None:
                return None
            total += size
        return total
    return None


def full_view(stored: Any) -> Any:
    """A loaded stored value as the step's result reads: a pipeline's stored envelope becomes its
    result (what the engine made of it when it arrived)."""
    envelope = pipeline_envelope(stored)
    return pipeline_result(envelope) if envelope is not None else stored
