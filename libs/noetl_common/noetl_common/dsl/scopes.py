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
    """`{{ step.data }}` and `{{ step.context }}` are the result itself when it has no such key
    (NoETL's accessors). A SQL
    result also answers to `{{ step.command_0 }}`, the Python-era per-statement shape many
    playbooks still read (the result is that of the last statement)."""
    if not isinstance(value, dict):
        return value
    extra: dict[str, Any] = {}
    if "command_0" not in value and ("rows" in value and "columns" in value or "affected_rows" in value):
        extra["command_0"] = value
    if "data" not in value:
        # `{{ step.data.command_0.rows }}` is read too: the data view answers to command_0 as well.
        extra["data"] = {**value, **extra}
    if "context" not in value:
        # NoETL's server answers `{{ step.context.x }}` as well as `{{ step.x }}` (its Python
        # worker's result envelope is `{status, context}`): the context view is the result itself.
        extra["context"] = value
    return {**value, **extra} if extra else value
