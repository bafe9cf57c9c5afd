"""HTTP client for the control plane (a shard or the router), in NoETL's worker contract.

Claims map to four outcomes the runtime acts on (§4.2); everything else is retried with capped,
jittered exponential backoff, honouring Retry-After, and then raised as ControlPlaneError.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Awaitable, Callable, Sequence
from urllib.parse import quote

import aiohttp
import msgspec

from noetl_common import tracing

from .wire import (
    BatchAnswer,
    Command,
    EagerRequest,
    Event,
    EventBatch,
    Handed,
    PoolDeregister,
    PoolHeartbeat,
    PoolRegistration,
    SingleEvent,
)

log = logging.getLogger("noetl.worker.client")

# Answers worth asking again: the server is busy, restarting or timed out (NoETL's worker list).
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# 409 codes meaning "not yours": another worker holds it, or it is already finished.
NOT_YOURS = frozenset({"active_claim", "already_terminal", "execution_cancelled"})
MAX_DELAY = 10.0
MAX_RETRY_AFTER = 3600.0  # the JetStream nak delay cap NoETL uses


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


class ControlPlaneError(Exception):
    """The control plane refused (status set, not retryable) or stayed unreachable (status None
    or the last retryable status)."""

    def __init__(self, message: str, status: int | None, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class Backoff(msgspec.Struct):
    attempts: int = 5
    first: float = 0.25
    cap: float = MAX_DELAY

    def delays(self) -> list[float]:
        return [min(self.first * 2 ** i, self.cap) for i in range(max(self.attempts - 1, 0))]


Sleep = Callable[[float], Awaitable[None]]


class ControlPlane:
    def __init__(self, base_url: str, session: aiohttp.ClientSession, *, backoff: Backoff | None = None,
                 claim_backoff: Backoff | None = None, sleep: Sleep = asyncio.sleep) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.backoff = backoff or Backoff()
        # Claims retry briefly in-process; after that the message is nak'ed and JetStream waits.
        self.claim_backoff = claim_backoff or Backoff(attempts=3, first=0.25, cap=2.0)
        self._sleep = sleep

    # -- commands ---------------------------------------------------------------------------------

    async def claim(self, event_id: int, worker_id: str) -> ClaimOutcome:
        body = msgspec.json.encode({"worker_id": worker_id})
        outcome: ClaimOutcome = RetryLater(1.0, "no attempt made")
        for delay in [*self.claim_backoff.delays(), None]:
            outcome = await self._claim_once(event_id, body)
            if not isinstance(outcome, RetryLater) or delay is None:
                return outcome
            await self._sleep(_jitter(max(delay, min(outcome.delay, self.claim_backoff.cap))))
        return outcome

    async def _claim_once(self, event_id: int, body: bytes) -> ClaimOutcome:
        try:
            async with self.session.post(f"{self.base_url}/api/commands/{event_id}/claim", data=body,
                                         headers=_traced({"Content-Type": "application/json"})) as resp:
                raw = await resp.read()
                if resp.status in (200, 201):
                    try:
                        return Claimed(msgspec.json.decode(raw, type=Command))
                    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                        return ClaimFailed(resp.status, f"unreadable claim response: {exc}")
                detail = _error(raw)
                message = str(detail.get("message") or detail.get("error") or _text(raw))
                if resp.status == 409:
                    code = str(detail.get("code") or "")
                    if code in NOT_YOURS or _says_not_yours(message):
                        return AlreadyClaimed(code or "conflict", message)
                    return RetryLater(_retry_after(resp, 1.0), f"claim conflict: {message}")
                if resp.status in RETRY_STATUSES:
                    return RetryLater(_retry_after(resp, 1.0), f"claim answered {resp.status}: {message}")
                return ClaimFailed(resp.status, message)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return RetryLater(1.0, f"control plane unreachable: {type(exc).__name__}: {exc}")

    async def get_command(self, event_id: int) -> Command:
        raw = await self._request("GET", f"/api/commands/{event_id}")
        return msgspec.json.decode(raw, type=Command)

    # -- events -----------------------------------------------------------------------------------

    async def post_events(self, execution_id: int, events: Sequence[Event], worker_id: str,
                          idempotency_key: str, *, eager: EagerRequest | None = None) -> Handed:
        """One batch with an Idempotency-Key, so a retry after a lost answer is not applied twice.
        With `eager`, the answer may hand over the execution's next commands (claimed and started
        for this worker); they are returned. A replay of the key returns the same ones again.
        A server without the batch route (404 on it) gets one POST /api/events per event; those
        are deduplicated by command_id and event type on the server."""
        batch = EventBatch(execution_id=str(execution_id), worker_id=worker_id, events=list(events), eager=eager)
        try:
            raw = await self._request("POST", "/api/events/batch", data=msgspec.json.encode(batch),
                                      headers={"Idempotency-Key": idempotency_key,
                                               "Content-Type": "application/json"})
            return _handed_over(raw, self.base_url)
        except ControlPlaneError as exc:
            if exc.status != 404 or not _is_missing_route(exc):
                raise
        log.info("no /api/events/batch on %s; posting events one by one", self.base_url)
        for event in events:
            single = SingleEvent(execution_id=str(execution_id), **msgspec.structs.asdict(event))
            await self._request("POST", "/api/events", data=msgspec.json.encode(single),
                                headers={"Content-Type": "application/json"})
        return Handed()

    # -- credentials and sub-playbooks ------------------------------------------------------------

    async def get_credential(self, name: str) -> dict[str, Any]:
        raw = await self._request("GET", f"/api/credentials/{quote(name, safe='')}",
                                  params={"include_data": "true"})
        decoded = msgspec.json.decode(raw)
        if not isinstance(decoded, dict):
            raise ControlPlaneError(f"credential {name!r}: unexpected response", None, retryable=False)
        return decoded

    async def mint_token(self, credential: str, audience: str | None = None) -> str:
        """A bearer token minted by the control plane from a credential (what `token()` renders to)."""
        raw = await self._request("POST", f"/api/credentials/{quote(credential, safe='')}/token",
                                  data=msgspec.json.encode({"audience": audience}))
        decoded = msgspec.json.decode(raw)
        if not isinstance(decoded, dict) or not isinstance(decoded.get("token"), str):
            raise ControlPlaneError(f"token({credential!r}): unexpected response", None, retryable=False)
        return decoded["token"]

    async def get_keychain(self, catalog_id: int, name: str, execution_id: int) -> dict[str, Any] | None:
        """An entry's value: global scope first, then this execution's own, then shared (NoETL's
        lookup order); None when none is there or it expired."""
        path = f"/api/keychain/{catalog_id}/{quote(name, safe='')}"
        for params in ({"scope_type": "global"}, {"scope_type": "local", "execution_id": str(execution_id)},
                       {"scope_type": "shared", "execution_id": str(execution_id)}):
            decoded = msgspec.json.decode(await self._request("GET", path, params=params))
            if isinstance(decoded, dict) and decoded.get("status") != "not_found":
                data = decoded.get("token_data") if decoded.get("status") == "success" else None
                return data if isinstance(data, dict) else None
        return None

    async def run_child(self, path: str, workload: dict[str, Any], parent_execution_id: int,
                        timeout: float, *, poll_seconds: float = 0.2) -> dict[str, Any]:
        """Start a sub-playbook and wait for its terminal status (with step results). It polls the
        cheap `cancellation-check` (the execution row) and reads `status?steps=true`, which decodes
        every command and step result of the child, only once that says the child ended (NoETL's
        server also says `failed` after a command failed that the playbook routes on, hence the
        status decides)."""
        started = msgspec.json.decode(await self._request("POST", "/api/execute", data=msgspec.json.encode({
            "path": path, "workload": workload, "parent_execution_id": str(parent_execution_id)}),
            headers={"Content-Type": "application/json"}))
        execution_id = started["execution_id"]
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            check = msgspec.json.decode(await self._request("GET", f"/api/executions/{execution_id}/cancellation-check"))
            if isinstance(check, dict) and (check.get("completed") or check.get("failed") or check.get("cancelled")):
                status = msgspec.json.decode(await self._request(
                    "GET", f"/api/executions/{execution_id}/status", params={"steps": "true"}))
                if status.get("completed"):
                    return status
            if asyncio.get_running_loop().time() > deadline:
                raise ControlPlaneError(f"sub-playbook {path} ({execution_id}) not finished after {timeout:.0f}s",
                                        None, retryable=False)
            await self._sleep(poll_seconds)

    async def get_result(self, ref: str) -> Any:
        """A stored result's value (`noetl://execution/<eid>/result/<name>/<id>`)."""
        return msgspec.json.decode(await self._request("GET", "/api/result/resolve", params={"ref": ref}))

    async def put_result(self, execution_id: int, name: str, data: Any, step: str) -> dict[str, Any]:
        """Store a value in the execution's result store; answers `{ref, store, scope, bytes, sha256, ...}`."""
        body = {"name": name, "data": data, "source_step": step}
        decoded = msgspec.json.decode(await self._request(
            "PUT", f"/api/result/{execution_id}", data=msgspec.json.encode(body),
            headers={"Content-Type": "application/json"}))
        return decoded if isinstance(decoded, dict) else {}

    # -- frames (NoETL's frames runtime) ----------------------------------------------------------

    async def frame_call(self, path: str, body: dict[str, Any], *, backoff: Backoff | None = None) -> dict[str, Any]:
        """POST to a frames route (`/api/stages/{id}/frames/claim`, `/api/frames/{id}/heartbeat|commit`);
        the decoded answer. A refusal (409: the frame is another worker's, or over) raises at once."""
        decoded = msgspec.json.decode(await self._request(
            "POST", path, data=msgspec.json.encode(body), headers={"Content-Type": "application/json"},
            backoff=backoff))
        if not isinstance(decoded, dict):
            raise ControlPlaneError(f"POST {path}: unexpected response", None, retryable=False)
        return decoded

    # -- worker pool ------------------------------------------------------------------------------

    async def register(self, registration: PoolRegistration) -> None:
        await self._request("POST", "/api/worker/pool/register", data=msgspec.json.encode(registration),
                            headers={"Content-Type": "application/json"}, backoff=Backoff(attempts=2))

    async def heartbeat(self, registration: PoolRegistration) -> None:
        """Carries the registration, so a control plane that forgot the pool re-creates it."""
        body = PoolHeartbeat(name=registration.name, registration=registration)
        await self._request("POST", "/api/worker/pool/heartbeat", data=msgspec.json.encode(body),
                            headers={"Content-Type": "application/json"}, backoff=Backoff(attempts=2))

    async def deregister(self, name: str) -> None:
        await self._request("POST", "/api/worker/pool/deregister", data=msgspec.json.encode(PoolDeregister(name=name)),
                            headers={"Content-Type": "application/json"}, backoff=Backoff(attempts=1))

    # -- transport --------------------------------------------------------------------------------

    async def _request(self, method: str, path: str, *, backoff: Backoff | None = None, **kw: Any) -> bytes:
        """The body of a 2xx answer. Retryable answers and network errors are retried; anything
        else raises at once (asking again cannot change a 400 or a 404)."""
        policy = backoff or self.backoff
        last, last_status = "no attempt made", None
        kw["headers"] = _traced(kw.get("headers") or {})
        for delay in [*policy.delays(), None]:
            wait = delay
            try:
                async with self.session.request(method, f"{self.base_url}{path}", **kw) as resp:
                    raw = await resp.read()
                    if resp.status < 300:
                        return raw
                    last, last_status = f"{method} {path} answered {resp.status}: {_text(raw)}", resp.status
                    if resp.status not in RETRY_STATUSES:
                        raise ControlPlaneError(last, resp.status, retryable=False)
                    if delay is not None:
                        wait = max(delay, min(_retry_after(resp, delay), policy.cap))
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                last, last_status = f"{method} {path} failed: {type(exc).__name__}: {exc}", None
            if wait is None:
                break
            await self._sleep(_jitter(wait))
        raise ControlPlaneError(last, last_status)


def _traced(headers: dict[str, str]) -> dict[str, str]:
    """The headers plus the current span's traceparent (when tracing): the shard's span of this
    call is a child of the command's span."""
    traceparent = tracing.current_traceparent()
    return {**headers, tracing.TRACEPARENT: traceparent} if traceparent else headers


def _jitter(delay: float) -> float:
    return delay * (0.8 + 0.4 * random.random())


def _retry_after(resp: aiohttp.ClientResponse, default: float) -> float:
    try:
        return min(max(0.0, float(resp.headers.get("Retry-After", default))), MAX_RETRY_AFTER)
    except ValueError:  # an HTTP date: not worth parsing, the default is close enough
        return default


def _says_not_yours(message: str) -> bool:
    text = message.lower()
    return any(s in text for s in ("being claimed", "another worker", "already claimed", "terminal state"))


def _is_missing_route(exc: ControlPlaneError) -> bool:
    """A 404 for the route itself, not for the execution or command named in the batch."""
    text = str(exc).lower()
    return not any(s in text for s in ("execution", "command", "not_found\""))


def _handed_over(raw: bytes, base_url: str) -> Handed:
    """The commands of a batch answer. Any other answer (a NoETL server's, an empty body) hands
    over nothing. An unreadable command is logged and skipped: the shard claimed it for us, so
    its lease expiry is what hands it to a worker again."""
    try:
        answer = msgspec.json.decode(raw, type=BatchAnswer) if raw.strip() else BatchAnswer()
    except (msgspec.DecodeError, msgspec.ValidationError):
        return Handed()
    commands = []
    for item in answer.commands or []:
        try:
            commands.append(msgspec.json.decode(item, type=Command))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("%s handed over an unreadable command (left to its lease): %s: %s",
                      base_url, exc, _text(bytes(item)))
    return Handed(commands, answer.ended)


def _text(raw: bytes) -> str:
    return raw[:300].decode(errors="replace")


def _error(raw: bytes) -> dict[str, Any]:
    """NoETL error bodies: `{code, message}`, `{error, status}` or FastAPI's `{detail: ...}`."""
    try:
        decoded = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return {}
    if not isinstance(decoded, dict):
        return {}
    detail = decoded.get("detail")
    if isinstance(detail, dict):
        return {**decoded, **detail}
    if isinstance(detail, str):
        return {**decoded, "message": decoded.get("message") or detail}
    return decoded
