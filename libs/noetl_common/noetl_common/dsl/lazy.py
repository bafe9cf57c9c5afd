"""A value loaded only when a template reads it: a step result kept in the result store appears in
render scopes as a `StoredView` of its stub (noetl_common.engine.stored), so a template reading
one of the stub's own fields costs nothing and only one reading another field loads the whole."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Callable, Iterator

from .scopes import with_data


class StoredView(Mapping[str, Any]):
    """A stub in a render scope: its own keys at once, any other key from the whole value, loaded
    on first need (`load`, memoised by the caller). `data`/`context` answer as the result itself,
    as for any result (dsl.scopes.with_data)."""

    __slots__ = ("stub", "_load", "_full")

    def __init__(self, stub: dict[str, Any], load: Callable[[], Any]) -> None:
        self.stub = stub
        self._load = load
        self._full: dict[str, Any] | None = None

    def __getitem__(self, key: str) -> Any:
        if key in self.stub:
            return self.stub[key]
        full = self._whole()
        if key in full:
            return full[key]
        if key in ("data", "context"):
            return self
        raise KeyError(key)

    def _whole(self) -> dict[str, Any]:
        if self._full is None:
            value = self._load()
            self._full = with_data(value) if isinstance(value, dict) else {}
        return self._full

    def __iter__(self) -> Iterator[str]:
        return iter(self.stub)

    def __len__(self) -> int:
        return len(self.stub)

    def __str__(self) -> str:
        return json.dumps(self.stub, default=str)

    __repr__ = __str__


def plain(value: Any) -> Any:
    """A rendered value with every StoredView in it as its stub (what a command carries: the
    reference, never the loaded value, as NoETL passes a proxy's compact form)."""
    if isinstance(value, StoredView):
        return value.stub
    if isinstance(value, dict):
        if not any(isinstance(v, (StoredView, dict, list)) for v in value.values()):
            return value
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        if not any(isinstance(v, (StoredView, dict, list)) for v in value):
            return value
        return [plain(v) for v in value]
    return value


def encode_hook(value: Any) -> Any:
    """msgspec enc_hook / json default: a StoredView encodes as its stub."""
    if isinstance(value, StoredView):
        return value.stub
    raise TypeError(f"cannot encode {type(value).__name__}")
