"""Jinja templates with minijinja, NoETL-style: undefined names chain silently, a value that is
exactly one `{{ expr }}` keeps its native type, mixed text renders to a string (semantics rule 8)."""

from __future__ import annotations

import functools
import json
import re
import types
from typing import Any

import minijinja

from ..keychain_refs import KeychainRef
from .lazy import encode_hook, plain

_SINGLE = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.S)
_FALSE = {"", "false", "0", "no", "none", "null", "off", "{}", "[]"}


class TemplateError(ValueError):
    def __init__(self, template: str, message: str) -> None:
        first = message.strip().splitlines()[0] if message.strip() else message
        super().__init__(f"template {template!r}: {first}")
        self.template = template


def _json_default(value: Any) -> Any:
    try:
        return encode_hook(value)
    except TypeError:
        return str(value)


def _fromjson(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _leaked_method(value: Any) -> bool:
    """minijinja-py answers a key a dict lacks with the dict's Python attribute of that name:
    `{{ page.items }}` on a page without `items` gives the bound `dict.items`, where NoETL's
    minijinja (its server and worker) gives undefined. Such a value is undefined here too."""
    return isinstance(value, types.BuiltinMethodType) and isinstance(getattr(value, "__self__", None), (dict, list))


def _default(value: Any, default: Any = "", boolean: bool = False) -> Any:
    """NoETL's `default` (filter_default of its server and worker): the default for undefined and
    none alike; `boolean` (Jinja's second argument) also for any falsy value."""
    if value is None or _leaked_method(value) or (boolean and not value):
        return default
    return value


def make_environment() -> minijinja.Environment:
    env = minijinja.Environment(undefined_behavior="chainable")
    env.add_filter("fromjson", _fromjson)
    env.add_filter("tojson", lambda v, *a, **k: json.dumps(v, default=_json_default))
    env.add_filter("default", _default)
    env.add_filter("d", _default)
    env.add_filter("len", lambda v: len(v) if v is not None else 0)
    return env


def _is_single_expression(text: str) -> str | None:
    m = _SINGLE.match(text)
    if not m:
        return None
    inner = m.group(1)
    return None if "{{" in inner or "}}" in inner else inner.strip()


@functools.lru_cache(maxsize=1)
def _shared_environment() -> minijinja.Environment:
    """Built once per process: an environment only holds filters, and building one costs more
    than the engine's whole step."""
    return make_environment()


def _references_as_text(value: Any) -> Any:
    if isinstance(value, KeychainRef):
        return str(value)
    if isinstance(value, dict):
        return {k: _references_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_references_as_text(v) for v in value]
    return value


class Renderer:
    def __init__(self) -> None:
        self.env = _shared_environment()

    def render(self, value: Any, ctx: dict[str, Any]) -> Any:
        """Recursively render strings inside dicts and lists."""
        if isinstance(value, str):
            return self.render_str(value, ctx)
        if isinstance(value, dict):
            return {self.render_str(k, ctx) if isinstance(k, str) and "{{" in k else k: self.render(v, ctx)
                    for k, v in value.items()}
        if isinstance(value, list):
            return [self.render(v, ctx) for v in value]
        return value

    def render_str(self, text: str, ctx: dict[str, Any]) -> Any:
        if "{{" not in text and "{%" not in text:
            return text
        expr = _is_single_expression(text)
        try:
            if expr is not None:
                value = self.env.eval_expr(expr, **ctx)
                if _leaked_method(value):
                    return None
                # A keychain reference stays a reference (text the worker fills in), also inside
                # a list or mapping the expression builds.
                # A stored result read whole stays its stub (dsl.lazy).
                value = plain(value)
                return _references_as_text(value) if "keychain" in expr else value
            return self.env.render_str(text, **ctx)
        except minijinja.TemplateError as exc:
            raise TemplateError(text, str(exc)) from None

    def truthy(self, condition: Any, ctx: dict[str, Any]) -> bool:
        """`when:` conditions: a bare expression is wrapped; the falsy set follows NoETL."""
        if condition is None:
            return True
        if isinstance(condition, bool):
            return condition
        text = str(condition)
        if "{{" not in text:
            text = "{{ " + text + " }}"
        value = self.render_str(text, ctx)
        if isinstance(value, str):
            return value.strip().lower() not in _FALSE
        if value is None:
            return False
        if isinstance(value, (dict, list)):
            return bool(value)
        return bool(value)
