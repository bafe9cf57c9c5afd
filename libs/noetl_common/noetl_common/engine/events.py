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
    # The worker that ran the command takes a sequential loop's next iteration ahead: handed to it
    # while this outcome is written, run as soon as the current one ends (core.fill_loop). Logged
    # in the finishing event's payload (`pipelined`), so a replay decides the same.
    pipelined: bool = False
