"""The fleet's HTTP routes the CLI uses: the shard map, committing an epoch, one shard's status,
readiness and projector metrics."""

from __future__ import annotations

import time
from typing import TypeVar

import aiohttp

from .errors import OpsError
from .http import TOKEN_REFUSED, bearer, call_json
from .prom import lag_by_shard
from .routing import id_owned_by
from .wire import CommitEpochAnswer, CommitEpochRequest, ShardMapAnswer, ShardStatus

SHARD_MAP = "/api/shard-map"
EPOCHS = "/api/internal/shard-map/epochs"
SHARD_STATUS = "/api/internal/shard/status"
EXECUTION_HEADER = "X-Execution-ID"
RETENTION = "/api/internal/retention"
RETENTION_RUN = "/api/internal/retention/run"

T = TypeVar("T")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class FleetApi:
    """One router (`api`) and, when `direct` is set, the shards' own registered URLs.

    Locally every shard URL is reachable, so status goes straight to the shard. In Kubernetes the
    registered URLs are cluster-internal names, so status goes through the router, routed by an id
    the shard owns (`routing.id_owned_by`)."""

    def __init__(self, session: aiohttp.ClientSession, api: str, token: str, *, direct: bool) -> None:
        self.session = session
        self.api = api.rstrip("/")
        self.token = token
        self.direct = direct

    async def shard_map(self) -> ShardMapAnswer:
        answer, _ = await call_json(self.session, "GET", self.api + SHARD_MAP, ShardMapAnswer,
                                    what="reading the shard map")
        if not answer.epochs:
            raise OpsError(f"reading the shard map: {self.api}{SHARD_MAP} lists no epochs")
        return answer

    async def commit_epoch(self, shard_count: int, grace_ms: int | None) -> CommitEpochAnswer:
        answer, _ = await call_json(self.session, "POST", self.api + EPOCHS, CommitEpochAnswer,
                                    headers=bearer(self.token),
                                    body=CommitEpochRequest(shard_count=shard_count, grace_ms=grace_ms),
                                    what=f"committing the {shard_count}-shard epoch")
        return answer

    def _shard_target(self, index: int, fleet: ShardMapAnswer, path: str,
                      known_url: str | None = None) -> tuple[str, dict[str, str]] | None:
        """The URL and headers that reach shard `index`'s route `path`, or None when it cannot be
        reached: directly at its own URL, or through the router by an id it owns."""
        headers = bearer(self.token)
        if self.direct:
            url = known_url or next((s.url for s in fleet.shards or [] if s.index == index and s.url), None)
            return (url.rstrip("/") + path, headers) if url else None
        routing_id = id_owned_by(index, fleet.as_map(), now_ms())
        if routing_id is None:
            return None
        headers[EXECUTION_HEADER] = str(routing_id)
        return self.api + path, headers

    async def shard_status(self, index: int, fleet: ShardMapAnswer, known_url: str | None = None) -> ShardStatus | None:
        """Shard `index`'s status, or None when it cannot be asked (not registered, owns no id,
        unreachable): an unreachable shard is a fact for the table, not an error. `known_url` is
        the shard's URL when the platform knows it (a local process)."""
        target = self._shard_target(index, fleet, SHARD_STATUS, known_url)
        if target is None:
            return None
        try:
            status, _ = await call_json(self.session, "GET", target[0], ShardStatus, headers=target[1],
                                        what=f"shard {index} status")
        except OpsError as exc:
            if TOKEN_REFUSED in str(exc):
                raise  # a wrong token is the operator's to fix, not a shard's state
            return None
        # The router may still route by an older map than the one just read: trust only shard `index`.
        return status if status.shard == index else None

    async def shard_call(self, index: int, fleet: ShardMapAnswer, method: str, path: str, answer: type[T],
                         what: str) -> T:
        """One internal route of shard `index`; an OpsError when it cannot be reached."""
        target = self._shard_target(index, fleet, path)
        if target is None:
            raise OpsError(f"{what}: shard {index} has no registered URL and owns no id now")
        result, _ = await call_json(self.session, method, target[0], answer, headers=target[1], what=what)
        return result

    async def ready(self, url: str) -> bool:
        try:
            async with self.session.get(url.rstrip("/") + "/readyz") as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def projector_lag(self, urls: list[str]) -> dict[int, float] | None:
        """Lag per shard merged over every projector replica's /metrics; None when none answered."""
        merged: dict[int, float] = {}
        answered = False
        for url in urls:
            try:
                async with self.session.get(url.rstrip("/") + "/metrics") as resp:
                    if resp.status != 200:
                        continue
                    merged.update(lag_by_shard(await resp.text()))
                    answered = True
            except (aiohttp.ClientError, TimeoutError):
                continue
        return merged if answered else None
