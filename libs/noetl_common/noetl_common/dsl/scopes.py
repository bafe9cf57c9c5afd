"""Names shared by every place that builds a template context."""

from __future__ import annotations

from typing import Any

SCOPE_PREFIXES = ("ctx.", "iter.", "step.", "vars.")


def strip_scope(key: str) -> str:
    """`set:` keys name their scope (`ctx.x`); values are stored and read under the bare name."""
    for prefix in SCOPE_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def with_data(value: Any) -> Any:
    """`{{ step.data }}` is the result itself when it has no `data` key (NoETL's accessor)."""
    if isinstance(value, dict) and "data" not in value:
        return {**value, "data": value}
    return value
