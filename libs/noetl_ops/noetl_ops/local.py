"""The local platform: shard processes belong to a running `make run`, which starts and stops
them on request through its control endpoint (so its Ctrl-C stops the added shards too)."""

from __future__ import annotations

import aiohttp

from noetl_common.wire.localrun import RunInfo, ShardCountRequest, ShardProcesses

from .fleet_api import FleetApi
from .http import bearer, call_json
from .platform import Say


class LocalPlatform:
    name = "local fleet (make run)"

    def __init__(self, session: aiohttp.ClientSession, run: RunInfo, token: str, api: FleetApi, say: Say,
                 projectors: list[str] | None = None, ready_timeout: float = 120.0) -> None:
        self.session = session
        self.run = run
        self.token = token
        self.api = api
        self.say = say
        self.projectors = projectors if projectors is not None else [run.projector]
        # make run answers a start request only once the shards are ready, so wait that long.
        self.start_timeout = aiohttp.ClientTimeout(total=ready_timeout + 30, sock_connect=5)

    async def _processes(self) -> ShardProcesses:
        answer, _ = await call_json(self.session, "GET", self.run.control.rstrip("/") + "/shards", ShardProcesses,
                                    headers=bearer(self.token), what="asking make run for its shards")
        return answer

    async def _set(self, count: int) -> ShardProcesses:
        # make run answers once every shard it started is ready (or names the one that failed).
        answer, _ = await call_json(self.session, "PUT", self.run.control.rstrip("/") + "/shards",
                                    ShardProcesses, headers=bearer(self.token),
                                    body=ShardCountRequest(count=count), timeout=self.start_timeout,
                                    what=f"asking make run for {count} shards")
        return answer

    async def replicas(self) -> int:
        running = [p.index for p in (await self._processes()).shards if p.running]
        return max(running) + 1 if running else 0

    async def grow(self, count: int) -> None:
        before = {p.index for p in (await self._processes()).shards if p.running}
        missing = [i for i in range(count) if i not in before]
        if not missing:
            self.say(f"shards 0..{count - 1} are already running")
            return
        self.say(f"starting api-shard-{', api-shard-'.join(map(str, missing))} in make run "
                 "(own database, waits until ready) ...")
        after = await self._set(max(count, max(before, default=-1) + 1))
        for p in after.shards:
            if p.index in missing:
                self.say(f"  api-shard-{p.index}: ready at {p.url}")

    async def shrink(self, count: int) -> None:
        before = {p.index for p in (await self._processes()).shards if p.running}
        leaving = sorted(i for i in before if i >= count)
        if not leaving:
            return
        self.say(f"stopping api-shard-{', api-shard-'.join(map(str, leaving))} (databases kept) ...")
        await self._set(count)
        self.say("  stopped")

    async def readiness(self) -> dict[int, bool]:
        return {p.index: p.running and await self.api.ready(p.url) for p in (await self._processes()).shards}

    async def shard_urls(self) -> dict[int, str]:
        return {p.index: p.url for p in (await self._processes()).shards if p.running}

    async def projector_lag(self) -> dict[int, float] | None:
        return await self.api.projector_lag(self.projectors)
