"""A real fleet for the router tests: three `python -m noetl_api_shard` processes on fresh
databases (one cluster database, three shard databases) and the router app on a real port."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import aiohttp
import msgspec
import pytest_asyncio
from aiohttp import web

from noetl_common.config import HttpSettings
from noetl_devstack.postgres import drop_databases, ensure_databases, with_database
from noetl_router.app import create_app
from noetl_router.config import RouterSettings

INTERNAL_TOKEN = "router-test-token"
ENCRYPTION_KEY = base64.b64encode(bytes(range(32))).decode()
SHARDS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ShardProc:
    index: int
    port: int
    env: dict[str, str]
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "noetl_api_shard"], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"shard {self.index} exited: {self.proc.stderr.read().decode()[-2000:]}")
                try:
                    async with session.get(f"{self.url}/readyz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"shard {self.index} did not become ready")


@dataclass
class Fleet:
    shards: list[ShardProc]
    router_url: str
    router_port: int
    app: web.Application
    cluster_dsn: str
    extra: dict = field(default_factory=dict)


def router_settings(urls: list[str], port: int) -> RouterSettings:
    return RouterSettings(shard_urls=tuple(urls), http=HttpSettings("127.0.0.1", port, 1024 * 1024),
                          internal_token=INTERNAL_TOKEN, probe_interval_seconds=0.2, failure_threshold=2,
                          connect_timeout_seconds=1.0, retry_attempts=3, retry_backoff_seconds=0.02,
                          map_refresh_seconds=5.0, pool_status_cache_seconds=0.0)  # fresh: a test kills a shard


@asynccontextmanager
async def another_router(fleet: "Fleet", **overrides: Any) -> AsyncIterator[str]:
    """A second router over the same shards, with settings changed by `overrides`; yields its URL."""
    port = free_port()
    settings = msgspec.structs.replace(router_settings([s.url for s in fleet.shards], port), **overrides)
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture(scope="module")
async def fleet(infra) -> AsyncIterator[Fleet]:
    tag = uuid.uuid4().hex[:10]
    names = [f"t_{tag}_rcluster", *(f"t_{tag}_rshard_{i}" for i in range(SHARDS))]
    await ensure_databases(infra.admin_dsn, names)
    cluster = with_database(infra.admin_dsn, names[0])
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("NOETL_")}
    shards = []
    for i in range(SHARDS):
        port = free_port()
        env = {**base_env, "NOETL_SHARD_INDEX": str(i), "NOETL_SHARD_COUNT": str(SHARDS),
               "NOETL_SHARD_DSN": with_database(infra.admin_dsn, names[1 + i]), "NOETL_CLUSTER_DSN": cluster,
               "NOETL_ENCRYPTION_KEY": ENCRYPTION_KEY, "NOETL_INTERNAL_API_TOKEN": INTERNAL_TOKEN,
               "NOETL_HTTP_HOST": "127.0.0.1", "NOETL_HTTP_PORT": str(port),
               "NOETL_DB_POOL_MIN": "1", "NOETL_DB_POOL_MAX": "4",
               # No worker in these tests: keep the reaper from re-issuing unclaimed commands.
               "NOETL_COMMAND_REPUBLISH_AFTER_SECONDS": "3600"}
        shards.append(ShardProc(i, port, env))
    # Start one first so the cluster migrations and shard-map seed are not raced by three processes.
    shards[0].start()
    await shards[0].wait_ready()
    for s in shards[1:]:
        s.start()
    await asyncio.gather(*(s.wait_ready() for s in shards[1:]))

    port = free_port()
    app = create_app(router_settings([s.url for s in shards], port))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield Fleet(shards, f"http://127.0.0.1:{port}", port, app, cluster)
    finally:
        await runner.cleanup()
        for s in shards:
            s.stop()
        await drop_databases(infra.admin_dsn, names)


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
