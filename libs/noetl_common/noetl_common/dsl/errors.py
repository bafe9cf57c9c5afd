"""The parser's one error type and the shape checks every part of it uses."""

from __future__ import annotations

from typing import Any


class PlaybookError(ValueError):
    """The playbook is not runnable; the message says where and why (the catalog answers 422)."""


def type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def mapping(step: str | None, field: str, value: Any) -> dict[str, Any]:
    """`value` as a mapping (absent or null = empty); anything else is the playbook's mistake."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        where = f"step '{step}': " if step is not None else ""
        raise PlaybookError(f"{where}{field} must be a mapping, got {type_name(value)}")
    return value


def integer(step: str, field: str, value: Any, *, minimum: int) -> int:
    """An integer setting; YAML may give it as a numeric string."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        wanted = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")
        raise PlaybookError(f"step '{step}': {field} must be {wanted}, got {value!r}")
    return value


def is_template(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value
