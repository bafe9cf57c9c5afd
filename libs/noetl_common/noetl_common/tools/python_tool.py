"""The python tool (semantics rule 10): inputs are globals, `input_data` and `args` (NoETL's Rust
worker's name for them); `context` is the execution's context when the command carries it; the
value is `result`, a top-level `return`, or `main(**inputs)`; stdout is captured; the result must
be JSON-serialisable."""

from __future__ import annotations

import asyncio
import builtins
import functools
import inspect
import io
import json
import textwrap
import traceback
from typing import Any

from .result import ToolResult


def _as_function(code: str) -> str:
    """Legacy code with a top-level `return`: its body as a function whose value is `result`."""
    return "def __noetl_step__():\n" + textwrap.indent(code, "    ") + "\nresult = __noetl_step__()\n"


def _returns_at_top_level(exc: SyntaxError) -> bool:
    return "'return' outside function" in str(exc)


@functools.lru_cache(maxsize=256)
def _compile(code: str) -> Any:
    """Compiled once per distinct code (a loop runs the same step thousands of times); code
    objects are immutable, so sharing them between steps and threads is safe."""
    try:
        return compile(code, "<step>", "exec")
    except SyntaxError as exc:
        if not _returns_at_top_level(exc):
            raise
    return compile(_as_function(code), "<step>", "exec")


@functools.lru_cache(maxsize=256)
def plain_code(code: str) -> str:
    """The code as a python tool without the legacy top-level `return` runs it (NoETL's does not
    wrap): legacy code wrapped as `run_python` wraps it, anything else unchanged. The shard asks
    for every python command it issues, so code without the word skips the compile."""
    if "return" not in code:
        return code
    try:
        compile(code, "<step>", "exec")
    except SyntaxError as exc:
        if _returns_at_top_level(exc):
            return _as_function(code)
    return code


def run_python(code: str, inputs: dict[str, Any], *, context: dict[str, Any] | None = None,
               modules: dict[str, Any] | None = None) -> ToolResult:
    """`modules`: names bound before the code runs (the tool's `libs:`); inputs win over them."""
    out = io.StringIO()
    # A private `print` keeps concurrent steps from interleaving into one global stdout.
    scope: dict[str, Any] = {"__builtins__": builtins, "__name__": "__noetl_step__", "json": json,
                             "print": functools.partial(print, file=out), "context": context or {},
                             "input_data": dict(inputs), "args": dict(inputs)}
    scope.update(modules or {})
    scope.update(inputs)  # a declared input wins over the input_data alias (semantics rule 3)
    try:
        exec(_compile(code), scope)
        result = scope.get("result")
        main = scope.get("main")
        if result is None and callable(main):
            params = inspect.signature(main).parameters
            takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
            kwargs = inputs if takes_all else {k: v for k, v in inputs.items() if k in params}
            result = main(**kwargs)
            if inspect.iscoroutine(result):
                result = asyncio.run(result)
    except BaseException as exc:  # SystemExit in user code must not stop the worker either
        tb = traceback.format_exc(limit=6)
        return ToolResult(ok=False, error=f"{type(exc).__name__}: {exc}\n{tb}", stdout=out.getvalue())
    if result is None:
        result = {"stdout": out.getvalue(), "stderr": ""}
    try:
        # stdlib json, not msgspec: msgspec would quietly encode a set as an array (rule 10 wants an error)
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return ToolResult(ok=False, error=f"python result is not JSON-serialisable: {exc}", stdout=out.getvalue())
    return ToolResult(ok=True, result=result, stdout=out.getvalue())
