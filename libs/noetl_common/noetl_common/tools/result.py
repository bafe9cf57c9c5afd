from __future__ import annotations

from typing import Any

import msgspec


class ToolResult(msgspec.Struct):
    ok: bool
    result: Any = None
    error: str | None = None
    stdout: str = ""
