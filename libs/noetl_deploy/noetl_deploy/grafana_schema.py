"""The dashboard checked against Grafana's own dashboard schema, as Grafana publishes it for Python:
`grafana-foundation-sdk` (types generated from Grafana's schema kinds, pinned to the Grafana
version in requirements-dev.txt).

`problems(dashboard)` decodes the JSON into those types (panels by their `type`, queries by their
data source's type, panel options by the panel plugin) and reports

- every field the schema does not know (the decoder drops it: found by encoding the result back
  and comparing with the input), and
- every value whose type is not the schema's (the decoder does not check types, so the decoded
  objects are walked against their annotations: strings, numbers, booleans, lists, maps, nested
  objects and enum members such as a variable's `type`, `hide` or `refresh`).

An empty list means Grafana's schema accepts the dashboard as written.
"""

from __future__ import annotations

import enum
import json
import types
import typing
from typing import Any

from grafana_foundation_sdk.cog import plugins
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

SDK = "grafana_foundation_sdk"
_registered = False


def _decode(dashboard: dict[str, Any]) -> Dashboard:
    global _registered
    if not _registered:
        plugins.register_default_plugins()  # panel options and queries decode into their types
        _registered = True
    return Dashboard.from_json(dashboard)


def problems(dashboard: dict[str, Any]) -> list[str]:
    model = _decode(dashboard)
    encoded = json.loads(json.dumps(model, cls=JSONEncoder))
    found: list[str] = []
    _unknown(dashboard, encoded, "", found)
    _typed(model, "", found)
    return found


def _unknown(given: Any, kept: Any, path: str, out: list[str]) -> None:
    if isinstance(given, dict) and isinstance(kept, dict):
        for key, value in given.items():
            if key not in kept:
                out.append(f"{path}.{key}: not a field of Grafana's dashboard schema")
            else:
                _unknown(value, kept[key], f"{path}.{key}", out)
    elif isinstance(given, list) and isinstance(kept, list):
        if len(given) != len(kept):
            out.append(f"{path}: {len(given)} items given, {len(kept)} kept by the schema")
        for i, (a, b) in enumerate(zip(given, kept)):
            _unknown(a, b, f"{path}[{i}]", out)


def _typed(obj: Any, path: str, out: list[str]) -> None:
    try:
        hints = typing.get_type_hints(type(obj))
    except Exception:  # noqa: BLE001 - a type the SDK cannot resolve is not ours to judge
        return
    for name, hint in hints.items():
        value = getattr(obj, name, None)
        if value is not None:
            out += _errors(value, hint, f"{path}.{name}")


def _errors(value: Any, hint: Any, path: str) -> list[str]:
    if hint is Any or hint is object or not isinstance(hint, type) and typing.get_origin(hint) is None:
        # Declared loosely (panel options, queries): walk what the plugin registry decoded it into.
        found: list[str] = []
        if type(value).__module__.startswith(SDK):
            _typed(value, path, found)
        return found
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _errors(value, options[0], path)
        attempts = [_errors(value, a, path) for a in options]
        if any(not a for a in attempts):
            return []
        for option, errors in zip(options, attempts):  # the variant it decoded into, if any
            if isinstance(option, type) and option.__module__.startswith(SDK) and isinstance(value, option):
                return errors
        return [f"{path}: {value!r} is none of {_names(options)}"]
    if origin is typing.Literal:
        return [] if value in args else [f"{path}: {value!r} is not one of {list(args)}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {value!r}"]
        return [e for i, item in enumerate(value) for e in _errors(item, args[0] if args else Any, f"{path}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {value!r}"]
        return [e for k, item in value.items() for e in _errors(item, args[1] if len(args) > 1 else Any, f"{path}.{k}")]
    if not isinstance(hint, type):
        return []
    if issubclass(hint, enum.Enum):
        ok = isinstance(value, hint) or value in {m.value for m in hint}
        return [] if ok else [f"{path}: {value!r} is not one of {[m.value for m in hint]}"]
    if hint is bool:
        return [] if isinstance(value, bool) else [f"{path}: expected a boolean, got {value!r}"]
    if hint in (int, float):
        ok = isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
        return [] if ok else [f"{path}: expected {hint.__name__}, got {value!r}"]
    if hint is str:
        return [] if isinstance(value, str) else [f"{path}: expected a string, got {value!r}"]
    if hint.__module__.startswith(SDK):
        try:
            matches = isinstance(value, hint)
        except TypeError:  # a protocol the SDK uses for variants
            matches = True
        if not matches:
            return [f"{path}: expected {hint.__name__}, got {value!r}"]
        nested: list[str] = []
        _typed(value, path, nested)
        return nested
    return []


def _names(options: list[Any]) -> str:
    return ", ".join(getattr(o, "__name__", str(o)) for o in options)
