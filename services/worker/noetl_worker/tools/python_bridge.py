"""`kind: python` on the worker: the shared in-process runner, on a step thread so the loop stays
free (step_threads). A step abandoned by its timeout or a cancel is interrupted inside that thread
(an asynchronous exception, delivered at the next bytecode), so runaway code stops instead of
burning a core for the life of the worker. A C call that never returns cannot be interrupted
this way."""

from __future__ import annotations

import functools
import importlib
from typing import Any

from noetl_common.tools import run_python

from .base import ToolContext, ToolError
from .scripts import script_text


def preload(libs: Any) -> dict[str, Any]:
    """NoETL's `libs:` (Python engine): `{alias: module}` or `{alias: {from: module, import: name}}`
    binds names before the code runs, so code may use `json`/`random`/`datetime` without importing
    them. A list names pip packages for NoETL's image builder; they are this worker's dependencies
    already (or not available), so it binds nothing."""
    if not isinstance(libs, dict):
        return {}
    out: dict[str, Any] = {}
    for alias, spec in libs.items():
        module, attribute = (spec.get("from"), spec.get("import")) if isinstance(spec, dict) else (spec, None)
        try:
            loaded = importlib.import_module(str(module or alias))
            out[str(alias)] = _attribute(loaded, str(attribute)) if attribute else loaded
        except (ImportError, AttributeError) as exc:
            raise ToolError(f"python tool libs.{alias}: cannot import {module or alias}"
                            f"{'.' + str(attribute) if attribute else ''}: {exc}") from None
    return out


def _attribute(module: Any, name: str) -> Any:
    """`from package import name` also finds a submodule not yet imported (google.cloud.storage)."""
    if hasattr(module, name):
        return getattr(module, name)
    return importlib.import_module(f"{module.__name__}.{name}")


async def run(config: dict[str, Any], inputs: dict[str, Any], ctx: ToolContext) -> Any:
    code = config.get("code") or (await script_text("python", config["script"], ctx) if config.get("script") else None)
    if not code:
        raise ToolError("python tool needs `code` or `script`")
    modules = preload(config.get("libs"))
    outcome = await ctx.step_threads.run(functools.partial(run_python, modules=modules, context=ctx.scope), code,
                                         inputs)
    ctx.stdout.append(outcome.stdout)
    if not outcome.ok:
        raise ToolError(outcome.error or "python tool failed")
    return outcome.result
