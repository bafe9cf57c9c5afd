"""What the engine reacts to (the HTTP layer maps worker events onto these)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Kind = Literal["command_done", "command_failed", "child_done", "cancel"]


class EngineEvent(msgspec.Struct, frozen=True, kw_only=True):
    kind: Kind
    command_id: int | None = None
    result: Any = None
    error: str | None = None
