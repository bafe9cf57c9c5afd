"""`kind: noop`: `result` if given, else `{status: ok, message}`."""

from __future__ import annotations

from typing import Any

from .base import ToolContext


async def run(config: dict[str, Any], inputs: dict[str, Any], ctx: ToolContext) -> Any:
    if "result" in config:
        return config["result"]
    return {"status": "ok", "message": config.get("message")}
