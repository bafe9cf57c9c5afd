"""`scale --shards M`: the same steps on every platform, each derived from what the fleet is now
(newest epoch, shard replicas, drain status), never from a stored plan. Re-running a scale that
stopped half way (Ctrl-C, timeout, a pod that would not start) therefore just finishes it.

Growing N -> M: shards N..M-1 (and their databases) start and become ready, they register, and
only then is the M-shard epoch committed, a grace period in the future, so no id is minted for a
shard that is not serving. Shrinking: the drain epoch is committed first (removed shards get no
new executions from it on), and their replicas go only once each is drained - no running
executions, no unpublished outbox rows, no projection lag - or with --force."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import msgspec

from .errors import EXIT_DRAINING, OpsError
from .fleet_api import FleetApi, now_ms
from .platform import Platform, Say
from .wire import ShardMapAnswer, ShardStatus


class ScaleOptions(msgspec.Struct, kw_only=True, frozen=True):
    force: bool = False               # remove shards that are not drained (their executions stop)
    grace_ms: int | None = None       # epoch lead time; None = the fleet's default
    register_timeout: float = 120.0   # new shards registering their URL in the cluster database
    drain_timeout: float = 600.0      # 0 = check once and return
    poll_seconds: float = 2.0


class Scaler:
    def __init__(self, api: FleetApi, platform: Platform, say: Say, options: ScaleOptions) -> None:
        self.api = api
        self.platform = platform
        self.say = say
        self.options = options

    async def run(self, target: int) -> int:
        if target < 1:
            raise OpsError(f"--shards must be at least 1, got {target}")
        fleet = await self.api.shard_map()
        newest = fleet.newest().shard_count
        replicas = await self.platform.replicas()
        # A wrong token would otherwise surface only at the commit, after pods were started.
        await self.api.shard_status(0, fleet, (await self.platform.shard_urls()).get(0))
        self.say(f"{self.platform.name}: {replicas} shard replicas; shard map: {_describe(fleet)}")
        if target >= newest:
            await self._grow(target, newest)
        else:
            await self._commit(target, "drain")
        # Left over from this or an earlier scale-in: shards beyond the target that still run.
        if await self.platform.replicas() > target:
            return await self._drain_and_remove(target)
        self.say(f"done: {target} shards")
        return 0

    async def _grow(self, target: int, newest: int) -> None:
        await self.platform.grow(target)
        if newest == target:
            self.say(f"the shard map already has {target} shards in its newest epoch; nothing to commit")
            return
        await self._wait_registered(target)
        await self._commit(target, "grow")

    async def _wait_registered(self, target: int) -> None:
        """The router, publisher and projector find shards by the URL each registers in the cluster
        database; committing before a new shard registered would hand it ids nobody can reach."""
        deadline = time.monotonic() + self.options.register_timeout
        while True:
            fleet = await self.api.shard_map()
            if fleet.shards is None:
                return  # a fleet that does not register URLs: readiness is all there is to check
            missing = sorted(set(range(target)) - {s.index for s in fleet.shards if s.url})
            if not missing:
                return
            if time.monotonic() > deadline:
                raise OpsError(f"shards {missing} are ready but not registered in the shard map after "
                               f"{self.options.register_timeout:.0f}s; check their logs, then re-run")
            await asyncio.sleep(self.options.poll_seconds)

    async def _commit(self, target: int, kind: str) -> None:
        answer = await self.api.commit_epoch(target, self.options.grace_ms)
        wait_s = max(0.0, (answer.effective_from_ms - now_ms()) / 1000)
        self.say(f"{kind} epoch committed: {answer.shard_count} shards from {_clock(answer.effective_from_ms)} "
                 f"(in {wait_s:.0f}s)")

    async def _drain_and_remove(self, target: int) -> int:
        deadline = time.monotonic() + self.options.drain_timeout
        shown: dict[int | str, str] = {}
        while True:
            fleet = await self.api.shard_map()
            leaving = range(target, await self.platform.replicas())
            lag = await self.platform.projector_lag()
            urls = await self.platform.shard_urls()
            if lag is None and "lag" not in shown:
                shown["lag"] = "unknown"
                self.say("  projection lag unknown (no projector metrics answered); not waiting for it")
            left = {}
            for i in leaving:
                state = await self._drain_state(i, fleet, lag, urls.get(i))
                if state != "drained":
                    left[i] = state
                if shown.get(i) != state:
                    self.say(f"  shard {i}: {state}")
                    shown[i] = state
            if not left or self.options.force:
                if left:
                    self.say(f"--force: removing shards {sorted(left)} that are not drained")
                await self.platform.shrink(target)
                self.say(f"done: {target} shards")
                return 0
            if time.monotonic() >= deadline:
                raise OpsError(f"shards {sorted(left)} are still draining; re-run `scale --shards {target}` to "
                               "finish once they are drained (or --force)", EXIT_DRAINING)
            await asyncio.sleep(self.options.poll_seconds)

    async def _drain_state(self, index: int, fleet: ShardMapAnswer, lag: dict[int, float] | None,
                           url: str | None) -> str:
        if index >= fleet.as_map().max_count():
            return "drained"  # in no epoch: it never owned an id
        status = await self.api.shard_status(index, fleet, url)
        if status is None:
            return "status unavailable (not counted as drained)"
        if status.pending_epoch is not None or not status.draining:
            # Until the drain epoch is in force the shard may still be given new executions.
            return "waiting for the drain epoch to take effect"
        figures = _figures(status, lag.get(index) if lag is not None else None)
        if status.drained and (lag is None or lag.get(index, 0) == 0):
            return "drained"
        return f"draining: {figures}"


def _figures(status: ShardStatus, lag: float | None) -> str:
    return (f"{status.running_executions} running, {status.outbox_pending} outbox rows, "
            f"projection lag {'?' if lag is None else f'{lag:.0f}'}")


def _describe(fleet: ShardMapAnswer) -> str:
    now = now_ms()
    parts = []
    for e in sorted(fleet.epochs, key=lambda e: e.effective_from_ms):
        when = "from start" if e.effective_from_ms <= 0 else _clock(e.effective_from_ms)
        parts.append(f"{e.shard_count} ({when}{', pending' if e.effective_from_ms > now else ''})")
    return " -> ".join(parts)


def _clock(unix_ms: int) -> str:
    return datetime.fromtimestamp(unix_ms / 1000).strftime("%H:%M:%S")
