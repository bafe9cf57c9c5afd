"""A fleet with tracing on: every process exports its spans with OTEL_TRACES_EXPORTER=console (one
JSON object per line on stderr, i.e. in its log file) and logs at DEBUG, so a test can read the
spans and the per-request log lines of one execution back from the logs."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, AsyncIterator

import pytest_asyncio

from noetl_devstack import secrets
from noetl_devstack.fleet import FleetConfig, fleet_specs, router_url, start_fleet
from noetl_devstack.infra import Infra
from noetl_devstack.processes import Supervisor

from ..fleet.conftest import LiveFleet, http  # noqa: F401 - the session fixture, shared

SHARDS = 2
TRACING_ENV = {
    "OTEL_TRACES_EXPORTER": "console",
    "OTEL_BSP_SCHEDULE_DELAY": "100",   # ms: spans reach the log soon after they end
    "NOETL_LOG_LEVEL": "DEBUG",          # the per-request log line
}


@pytest_asyncio.fixture(scope="package")
async def traced_fleet() -> AsyncIterator[LiveFleet]:
    work = Path(tempfile.mkdtemp(prefix="noetl-traced-fleet-"))
    infra = Infra(work)
    supervisor = Supervisor(work / "logs")
    try:
        info = await infra.up(SHARDS)
        dev_secrets = secrets.load_or_create(work / "secrets.json")
        specs = fleet_specs(FleetConfig(cluster_dsn=info.cluster_dsn(), shard_dsns=info.shard_dsns(SHARDS),
                                        nats_url=info.nats_url, secrets=dev_secrets, workers=1,
                                        extra_env=TRACING_ENV))
        await start_fleet(supervisor, specs)
        yield LiveFleet(router=router_url(specs), specs=specs, admin_dsn=info.admin_dsn,
                        shard_dsns=info.shard_dsns(SHARDS), token=dev_secrets["NOETL_INTERNAL_API_TOKEN"],
                        logs=work / "logs", supervisor=supervisor)
    finally:
        supervisor.stop_all()
        infra.down()


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
