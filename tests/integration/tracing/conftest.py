"""A fleet with tracing on: every process exports its spans with OTEL_TRACES_EXPORTER=console (one
JSON object per line on stderr, i.e. in its log file) and logs at DEBUG, so a test can read the
spans and the per-request log lines of one execution back from the logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, AsyncIterator

import pytest_asyncio

from ..fleet.conftest import LiveFleet, http, own_fleet  # noqa: F401 - the session fixture, shared

SHARDS = 2
TRACING_ENV = {
    "OTEL_TRACES_EXPORTER": "console",
    "OTEL_BSP_SCHEDULE_DELAY": "100",   # ms: spans reach the log soon after they end
    "NOETL_LOG_LEVEL": "DEBUG",          # the per-request log line
}


@pytest_asyncio.fixture(scope="package")
async def traced_fleet() -> AsyncIterator[LiveFleet]:
    async with own_fleet("noetl-traced-fleet-", SHARDS, workers=1, extra_env=TRACING_ENV) as fleet:
        yield fleet


def read_log(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(spans, log lines) of one process's log file: every line is one JSON object, a span when it
    has a span context, else a log record. Anything else (a traceback printed raw) is skipped."""
    spans, lines = [], []
    for raw in path.read_text(errors="replace").splitlines():
        try:
            obj = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        (spans if "context" in obj and "name" in obj else lines).append(obj)
    return spans, lines
