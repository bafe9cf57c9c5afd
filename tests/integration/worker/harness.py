"""The worker under test: a Worker on its own pool against real NATS JetStream, with helpers to
publish notifications and wait for the durable consumer to settle."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import msgspec
import nats
from prometheus_client import CollectorRegistry

from noetl_common.config import HttpSettings
from noetl_common.streams import ensure_streams
from noetl_worker.client import Backoff
from noetl_worker.config import WorkerSettings
from noetl_worker.executor import default_runners
from noetl_common.streams import COMMANDS_STREAM as STREAM
from noetl_worker.runtime import Worker, WorkerMetrics

from .conftest import StandIn


def settings(server_url: str, nats_url: str, pool: str, **kw: Any) -> WorkerSettings:
    values = dict(server_url=server_url, nats_url=nats_url, pool=pool, worker_id=f"w-{pool}", max_concurrent=2,
                  heartbeat_seconds=0.5, ack_wait_seconds=3.0, progress_seconds=0.5, tool_timeout_seconds=20.0,
                  shutdown_grace_seconds=5.0, http=HttpSettings(host="127.0.0.1", port=0, max_body_bytes=65536),
                  log_level="INFO", script_root=".")
    values.update(kw)
    return WorkerSettings(**values)


class Harness:
    def __init__(self, nats_url: str, server_url: str, runners: dict | None = None, *,
                 worker_cls: type[Worker] = Worker, **kw: Any) -> None:
        self.pool = f"wt{uuid.uuid4().hex[:8]}"
        self.nats_url = nats_url
        self.metrics = WorkerMetrics(CollectorRegistry())
        self.worker = worker_cls(settings(server_url, nats_url, self.pool, **kw), runners or default_runners(),
                                 self.metrics, backoff=Backoff(attempts=2, first=0.05, cap=0.2),
                                 repost_backoff=Backoff(first=0.05, cap=0.2))
        self.task: asyncio.Task | None = None
        self.nc: nats.NATS | None = None

    async def __aenter__(self) -> "Harness":
        self.nc = await nats.connect(self.nats_url)
        await ensure_streams(self.nc.jetstream(), (STREAM,))
        return self

    def start(self) -> None:
        self.task = asyncio.create_task(self.worker.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.worker.stop()
            await asyncio.wait_for(self.task, 30)

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()
        js = self.nc.jetstream()
        try:
            await js.delete_consumer(STREAM, self.worker.settings.durable)
        except Exception:
            pass
        await self.nc.close()

    async def publish(self, execution_id: int, event_id: int, step: str = "s", raw: bytes | None = None) -> None:
        note = raw if raw is not None else msgspec.json.encode(
            {"execution_id": execution_id, "event_id": event_id, "command_id": str(event_id), "step": step})
        await self.nc.jetstream().publish(f"noetl.commands.{self.pool}.{execution_id}", note)

    async def consumer(self):
        return await self.nc.jetstream().consumer_info(STREAM, self.worker.settings.durable)

    async def settled(self, timeout: float = 15) -> Any:
        """Wait until every delivered message is acked (nothing pending, nothing awaiting ack)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                info = await self.consumer()
                if info.num_pending == 0 and info.num_ack_pending == 0 and info.delivered.stream_seq > 0:
                    return info
            except Exception:
                pass
            await asyncio.sleep(0.1)
        raise AssertionError(f"consumer not settled: {await self.consumer()}")


async def until(predicate, timeout: float = 15, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def python_command(plane: StandIn, event_id: int, execution_id: int, code: str, inputs: dict | None = None,
                   step: str = "s") -> None:
    plane.commands[event_id] = {"execution_id": execution_id, "step": step, "action": "python",
                                "context": {"tool_config": {"code": code}, "input": inputs or {},
                                            "tool": {"kind": "python", "code": code}, "render_context": {},
                                            "attempt": 1}}
