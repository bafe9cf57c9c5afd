from __future__ import annotations

from typing import Any

import msgspec


class ToolResult(msgspec.Struct):
    ok: bool
    result: Any = None
    error: str | None = None
    stdout: str = ""
    # What policies test besides the message (NoETL's `output.error`): `kind`, `retryable` and,
    # for HTTP, `status`; and `http: {status, headers}` for an HTTP task whether it failed or not.
    error_info: dict[str, Any] | None = None
    http: dict[str, Any] | None = None
