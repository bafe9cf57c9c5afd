"""HTTP client for the control plane (a shard or the router), in NoETL's worker contract."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import aiohttp
import msgspec

log = logging.getLogger("noetl.worker.client")

RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}


class Command(msgspec.Struct, kw_only=True):
    execution_id: int
    node_name: str
    action: str
    context: dict[str, Any]
    meta: dict[str, Any] = {}
    event_id: int | None = None
    attempt: int | None = None


class Claimed(msgspec.Struct):
    command: Command


class AlreadyClaimed(msgspec.Struct):
    code: str
    message: str


class RetryLater(msgspec.Struct):
    delay: float
    reason: str


class ClaimFailed(msgspec.Struct):
    status: int
    reason: str


ClaimOutcome = Claimed | AlreadyClaimed | RetryLater | ClaimFailed


def _retry_after(resp: aiohttp.ClientResponse, default: float) -> float:
    try:
        return max(0.0, float(resp.headers.get("Retry-After", default)))
    except ValueError:
        return default


class ControlPlane:
    def __init__(self, base_url: str, session: aiohttp.ClientSession, *, attempts: int = 5) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.attempts = attempts

    async def claim(self, event_id: int, worker_id: str) -> ClaimOutcome:
        try:
            async with self.session.post(f"{self.base_url}/api/commands/{event_id}/claim",
                                         json={"worker_id": worker_id}) as resp:
                body = await resp.read()
                if resp.status in (200, 201):
                    return Claimed(msgspec.json.decode(body, type=Command))
                detail = _error(body)
                if resp.status == 409:
                    return AlreadyClaimed(detail.get("code") or "conflict", detail.get("error", ""))
                if resp.status in RETRY_STATUSES:
                    return RetryLater(_retry_after(resp, 1.0), f"claim answered {resp.status}")
                return ClaimFailed(resp.status, detail.get("error") or body[:200].decode(errors="replace"))
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return RetryLater(1.0, f"control plane unreachable: {exc}")

    async def post_events(self, execution_id: int, events: list[dict[str, Any]], worker_id: str,
                          idempotency_key: str) -> None:
        """One batch with an Idempotency-Key, retried with capped backoff: a retry after a lost answer
        is recognised by the server and not applied twice."""
        body = {"execution_id": str(execution_id), "worker_id": worker_id, "events": events}
        await self._with_retries("POST", "/api/events/batch", json=body,
                                 headers={"Idempotency-Key": idempotency_key})

    async def get_credential(self, name: str) -> dict[str, Any]:
        return await self._with_retries("GET", f"/api/credentials/{name}", params={"include_data": "true"})

    async def run_child(self, path: str, workload: dict[str, Any], parent_execution_id: int,
                        timeout: float) -> dict[str, Any]:
        """Start a sub-playbook and wait for its terminal status (with step results)."""
        started = await self._with_retries("POST", "/api/execute", json={
            "path": path, "workload": workload, "parent_execution_id": str(parent_execution_id)})
        execution_id = started["execution_id"]
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            status = await self._with_retries("GET", f"/api/executions/{execution_id}/status",
                                              params={"steps": "true"})
            if status.get("completed"):
                return status
            if asyncio.get_running_loop().time() > deadline:
                raise ControlPlaneError(f"sub-playbook {path} ({execution_id}) not finished after {timeout:.0f}s",
                                        None)
            await asyncio.sleep(0.2)

    async def pool(self, action: str, body: dict[str, Any]) -> None:
        await self._with_retries("POST", f"/api/worker/pool/{action}", json=body, attempts=2)

    async def _with_retries(self, method: str, path: str, *, attempts: int | None = None, **kw: Any) -> Any:
        delay = 0.25
        last = "no attempt made"
        for attempt in range(attempts or self.attempts):
            try:
                async with self.session.request(method, f"{self.base_url}{path}", **kw) as resp:
                    body = await resp.read()
                    if resp.status < 300:
                        return msgspec.json.decode(body) if body else None
                    last = f"{method} {path} answered {resp.status}: {body[:300].decode(errors='replace')}"
                    if resp.status not in RETRY_STATUSES:
                        raise ControlPlaneError(last, resp.status)
                    delay = max(delay, _retry_after(resp, delay))
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                last = f"{method} {path} failed: {exc}"
            await asyncio.sleep(delay * (0.8 + 0.4 * random.random()))
            delay = min(delay * 2, 10.0)
        raise ControlPlaneError(last, None)


class ControlPlaneError(Exception):
    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


def _error(body: bytes) -> dict[str, Any]:
    try:
        decoded = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return {}
    if isinstance(decoded, dict) and isinstance(decoded.get("detail"), dict):
        return {**decoded["detail"], "error": decoded["detail"].get("message", "")}
    return decoded if isinstance(decoded, dict) else {}
