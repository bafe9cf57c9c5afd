"""Query-string and path parameters with 400s that name the parameter."""

from __future__ import annotations

from aiohttp import web

from noetl_common.errors import bad_request
from noetl_common.ids import parse_id

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def query_bool(request: web.Request, name: str, default: bool = False) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise bad_request(f"query parameter {name} must be true or false, got {raw!r}")


def query_str(request: web.Request, name: str) -> str | None:
    raw = request.query.get(name)
    return raw if raw not in (None, "") else None


def query_id(request: web.Request, name: str) -> int | None:
    raw = query_str(request, name)
    return None if raw is None else to_id(raw, name)


def path_id(request: web.Request, name: str) -> int:
    return to_id(request.match_info[name], name)


def to_id(value: object, name: str) -> int:
    try:
        return parse_id(value, name)
    except ValueError as exc:
        raise bad_request(str(exc)) from None


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = query_str(request, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"query parameter {name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise bad_request(f"query parameter {name} must be between {lo} and {hi}, got {value}")
    return value
