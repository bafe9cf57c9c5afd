"""A pipeline's render scope with the stored results its tasks read loaded.

The shard sends a pipeline's scope with earlier steps' stored results as stubs (`_ref`, `_store`
and small fields: noetl_common.engine.stored). The tasks are rendered here, synchronously, so
before they run, every stub whose name a task template reads a field of that the stub lacks
(`{{ big.rows }}`, `{{ big['rows'] }}`, `{{ big.data.rows }}`) is loaded whole from the control
plane's result store. A stub read only for its kept fields (`{{ big._ref }}`, `{{ big.count }}`)
or passed on whole stays a stub, as in the engine's own renders. A result in the `gcs` tier is read
from its GCS object (result_tiers.load).
"""

from __future__ import annotations

import re
from typing import Any, Awaitable, Callable

import msgspec

from noetl_common.engine.stored import full_view, is_stub
from noetl_common.result_refs import PREFIX

from . import result_tiers

GetResult = Callable[[str], Awaitable[Any]]


def fields_read(text: str, name: str) -> set[str]:
    """The fields templates in `text` read of `name` (`name.f`, `name['f']`, `name["f"]`)."""
    pattern = rf"(?<![\w.]){re.escape(name)}\s*(?:\.\s*(\w+)|\[\s*['\"]([^'\"]+)['\"]\s*\])"
    return {m.group(1) or m.group(2) for m in re.finditer(pattern, text)}


async def load_read_stubs(tasks: list[Any], scope: dict[str, Any], get_result: GetResult) -> dict[str, Any]:
    stubs = {name: value for name, value in scope.items() if is_stub(value)}
    if not stubs:
        return scope
    text = msgspec.json.encode(tasks).decode()
    loaded = dict(scope)
    for name, stub in stubs.items():
        uri = stub["_ref"].get("ref")
        if not isinstance(uri, str) or not uri.startswith(PREFIX) or fields_read(text, name) <= set(stub):
            continue
        value = full_view(await result_tiers.load(stub["_ref"], get_result))
        if isinstance(value, dict):
            loaded[name] = {**value, "_ref": stub["_ref"], "_store": stub.get("_store")}
    return loaded
