"""The control-plane client against a real local HTTP peer: claim outcome mapping, retries with
backoff and Retry-After, batch fallback, credentials and pool calls."""

from __future__ import annotations

import socket

import aiohttp
import pytest

from noetl_worker.client import (
    AlreadyClaimed,
    Backoff,
    ClaimFailed,
    Claimed,
    ControlPlane,
    ControlPlaneError,
    RetryLater,
)
from noetl_worker.events import Reporter
from noetl_worker.wire import EagerRequest, Handed, PoolRegistration

CLAIM = "/api/commands/{event_id}/claim"
BATCH = "/api/events/batch"
COMMAND = {"status": "ok", "event_id": 42, "execution_id": 7, "node_id": "fetch", "node_name": "fetch",
           "action": "http", "command_id": "42", "attempt": 1, "max_attempts": 3,
           "context": {"tool_config": {"url": "http://x"}, "input": {"a": 1}}, "meta": {"command_id": 42}}


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def plane(peer, session, sleeps=None, **kw) -> ControlPlane:
    return ControlPlane(peer.url, session, sleep=sleeps or Sleeps(), **kw)


async def test_claim_ok_returns_the_command(peer, session):
    peer.answer(CLAIM, 200, COMMAND)
    got = await plane(peer, session).claim(42, "w1")
    assert isinstance(got, Claimed)
    assert (got.command.execution_id, got.command.node_name, got.command.action) == (7, "fetch", "http")
    assert got.command.context["input"] == {"a": 1} and got.command.attempt == 1
    [(_, path, _, body)] = peer.hits(CLAIM)
    assert path == "/api/commands/42/claim" and body == {"worker_id": "w1"}


@pytest.mark.parametrize("body", [
    {"code": "active_claim", "message": "Command already claimed by w2", "worker_id": "w2"},
    {"code": "already_terminal", "message": "Command status: COMPLETED"},
    {"detail": {"code": "execution_cancelled", "message": "cancelled"}},
    {"error": "Command already claimed by w9", "status": 409},           # the Rust server's shape
])
async def test_claim_409_not_ours_is_already_claimed(peer, session, body):
    peer.answer(CLAIM, 409, body, {"Retry-After": "2"})
    got = await plane(peer, session).claim(42, "w1")
    assert isinstance(got, AlreadyClaimed)
    assert len(peer.hits(CLAIM)) == 1  # never retried: the existing claim is authoritative


async def test_claim_other_409_is_retry_later(peer, session):
    peer.default(CLAIM, 409, {"code": "something_else", "message": "odd"})
    sleeps = Sleeps()
    got = await plane(peer, session, sleeps).claim(42, "w1")
    assert isinstance(got, RetryLater) and "odd" in got.reason


async def test_claim_retryable_statuses_retry_then_answer_retry_later(peer, session):
    sleeps = Sleeps()
    peer.default(CLAIM, 503, {"code": "pool_saturated"}, {"Retry-After": "7"})
    got = await plane(peer, session, sleeps, claim_backoff=Backoff(attempts=3, first=0.25, cap=2.0)).claim(42, "w1")
    assert isinstance(got, RetryLater) and got.delay == 7.0  # Retry-After is what the nak delay uses
    assert len(peer.hits(CLAIM)) == 3 and len(sleeps.calls) == 2
    assert all(1.6 <= s <= 2.4 for s in sleeps.calls)  # Retry-After capped by the in-process backoff cap


@pytest.mark.parametrize("status", [408, 429, 502, 503, 504])
async def test_claim_recovers_after_transient_answers(peer, session, status):
    peer.answer(CLAIM, status, {"error": "busy"}, times=2)
    peer.answer(CLAIM, 200, COMMAND)
    got = await plane(peer, session).claim(42, "w1")
    assert isinstance(got, Claimed) and len(peer.hits(CLAIM)) == 3


@pytest.mark.parametrize("status", [404, 400, 403])
async def test_claim_other_statuses_fail_without_retry(peer, session, status):
    peer.answer(CLAIM, status, {"detail": "command not found: 42"})
    got = await plane(peer, session).claim(42, "w1")
    assert isinstance(got, ClaimFailed) and got.status == status and "command not found" in got.reason
    assert len(peer.hits(CLAIM)) == 1


async def test_claim_unreachable_is_retry_later(session):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    got = await ControlPlane(f"http://127.0.0.1:{port}", session, sleep=Sleeps()).claim(1, "w")
    assert isinstance(got, RetryLater) and "unreachable" in got.reason


async def test_claim_with_garbage_200_is_a_failure_not_a_crash(peer, session):
    peer.answer(CLAIM, 200, {"unexpected": True})
    got = await plane(peer, session).claim(1, "w")
    assert isinstance(got, ClaimFailed) and "unreadable" in got.reason


def reporter() -> Reporter:
    return Reporter(execution_id=7, step="fetch", command_id="42", worker_id="w1", attempt=1)


async def test_post_events_retries_with_the_same_idempotency_key(peer, session):
    sleeps = Sleeps()
    peer.answer(BATCH, 503, {"code": "ack_timeout"}, {"Retry-After": "1"})
    peer.answer(BATCH, 502, "bad gateway")
    peer.answer(BATCH, 202, {"status": "accepted", "event_ids": [1, 2]})
    r = reporter()
    await plane(peer, session, sleeps).post_events(7, r.succeeded({"v": 1}, "out"), "w1", r.key("ok"))
    hits = peer.hits(BATCH)
    assert len(hits) == 3 and len(sleeps.calls) == 2
    assert {h[2]["Idempotency-Key"] for h in hits} == {"w1:7:42:1:ok"}
    body = hits[-1][3]
    assert body["execution_id"] == "7" and body["worker_id"] == "w1"
    assert [e["event_type"] for e in body["events"]] == ["call.done", "command.completed"]
    assert body["events"][0]["payload"] == {"command_id": "42", "worker_id": "w1", "result": {"v": 1}, "stdout": "out"}
    assert body["events"][0]["step"] == "fetch" and body["events"][0]["command_id"] == "42"


async def test_post_events_backoff_is_capped_and_exponential(peer, session):
    sleeps = Sleeps()
    peer.default(BATCH, 503, {"code": "queue_unavailable"})
    with pytest.raises(ControlPlaneError) as err:
        await plane(peer, session, sleeps, backoff=Backoff(attempts=6, first=0.5, cap=3.0)).post_events(
            7, reporter().started(), "w1", "k")
    assert err.value.retryable and err.value.status == 503
    assert len(peer.hits(BATCH)) == 6
    nominal = [0.5, 1.0, 2.0, 3.0, 3.0]
    assert all(0.8 * n <= s <= 1.2 * n for s, n in zip(sleeps.calls, nominal, strict=True))


async def test_post_events_refusal_is_not_retried(peer, session):
    peer.answer(BATCH, 422, {"code": "too_large", "message": "batch over 2 MiB"})
    with pytest.raises(ControlPlaneError) as err:
        await plane(peer, session).post_events(7, reporter().started(), "w1", "k")
    assert not err.value.retryable and err.value.status == 422 and len(peer.hits(BATCH)) == 1


async def test_post_events_falls_back_to_single_events_without_a_batch_route(peer, session):
    peer.answer(BATCH, 404, "404: Not Found")
    peer.default("/api/events", 200, {"status": "ok", "event_id": 1, "commands_generated": 0})
    r = reporter()
    await plane(peer, session).post_events(7, r.failed("boom", ""), "w1", "k")
    singles = [h[3] for h in peer.hits("/api/events")]
    assert [s["event_type"] for s in singles] == ["call.error", "command.failed"]
    assert all(s["execution_id"] == "7" and s["step"] == "fetch" for s in singles)
    assert singles[0]["payload"]["error"] == "boom"


async def test_post_events_404_for_an_unknown_execution_is_not_a_missing_route(peer, session):
    peer.answer(BATCH, 404, {"code": "not_found", "message": "execution 7 not found"})
    with pytest.raises(ControlPlaneError) as err:
        await plane(peer, session).post_events(7, reporter().started(), "w1", "k")
    assert err.value.status == 404 and not peer.hits("/api/events")


async def test_get_command_and_credentials(peer, session):
    peer.answer("/api/commands/{event_id}", 200, {k: v for k, v in COMMAND.items() if k != "status"})
    peer.answer("/api/credentials/{name}", 200, {"name": "pg local", "type": "postgres", "data": {"db_host": "h"}})
    cp = plane(peer, session)
    command = await cp.get_command(42)
    assert command.node_name == "fetch" and command.context["tool_config"] == {"url": "http://x"}
    cred = await cp.get_credential("pg local")
    assert cred["data"] == {"db_host": "h"}
    (_, path, _, _), = peer.hits("/api/credentials/{name}")
    assert path == "/api/credentials/pg%20local?include_data=true"
    peer.answer("/api/credentials/{name}", 404, {"detail": "credential not found"})
    with pytest.raises(ControlPlaneError, match="404") as err:
        await cp.get_credential("nope")
    assert not err.value.retryable


async def test_pool_register_heartbeat_deregister(peer, session):
    for route in ("register", "heartbeat", "deregister"):
        peer.default(f"/api/worker/pool/{route}", 200, {"status": "ok", "name": "w1", "runtime_id": "1"})
    cp = plane(peer, session)
    reg = PoolRegistration(name="w1", capacity=4, labels={"pool_name": "default"})
    await cp.register(reg)
    await cp.heartbeat(reg)
    await cp.deregister("w1")
    registered = peer.hits("/api/worker/pool/register")[0][3]
    assert {k: registered[k] for k in ("name", "runtime", "status", "capacity", "labels")} == {
        "name": "w1", "runtime": "python", "status": "ready", "capacity": 4, "labels": {"pool_name": "default"}}
    assert peer.hits("/api/worker/pool/heartbeat")[0][3]["registration"]["name"] == "w1"
    assert peer.hits("/api/worker/pool/deregister")[0][3] == {"name": "w1"}


async def test_network_errors_are_retried(session):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps = Sleeps()
    cp = ControlPlane(f"http://127.0.0.1:{port}", session, sleep=sleeps, backoff=Backoff(attempts=3))
    with pytest.raises(ControlPlaneError) as err:
        await cp.post_events(1, reporter().started(), "w", "k")
    assert err.value.retryable and err.value.status is None and len(sleeps.calls) == 2


def test_backoff_delays():
    assert Backoff(attempts=5, first=0.25, cap=1.0).delays() == [0.25, 0.5, 1.0, 1.0]
    assert Backoff(attempts=1).delays() == []


async def test_timeout_is_retryable(peer):
    peer.slow["/api/commands/{event_id}"] = 2
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.2)) as short:
        cp = ControlPlane(peer.url, short, sleep=Sleeps(), backoff=Backoff(attempts=2))
        with pytest.raises(ControlPlaneError, match="TimeoutError") as err:
            await cp.get_command(1)
    assert err.value.retryable and len(peer.hits("/api/commands/{event_id}")) == 2


async def test_claim_that_started_the_command_says_so(peer, session):
    peer.answer(CLAIM, 200, {**COMMAND, "started": True})
    peer.answer(CLAIM, 200, COMMAND)
    cp = plane(peer, session)
    first, second = await cp.claim(42, "w1"), await cp.claim(42, "w1")
    assert isinstance(first, Claimed) and first.command.started
    assert isinstance(second, Claimed) and not second.command.started  # a NoETL server never sends it


async def test_post_events_asks_for_eager_commands_and_returns_them(peer, session):
    handed = {**COMMAND, "event_id": 43, "command_id": "43", "node_name": "next", "started": True}
    peer.answer(BATCH, 202, {"status": "accepted", "event_ids": [1, 2], "commands": [handed]})
    r = reporter()
    got = await plane(peer, session).post_events(7, r.succeeded(1, ""), "w1", r.key("ok"),
                                                  eager=EagerRequest(slots=3, pool="default"))
    assert [(c.event_id, c.node_name, c.started) for c in got.commands] == [(43, "next", True)]
    assert not got.ended
    assert peer.hits(BATCH)[0][3]["eager"] == {"slots": 3, "pool": "default"}


@pytest.mark.parametrize("answer", [
    {"status": "accepted", "request_id": "1", "event_ids": [1], "duplicate": False},  # NoETL's answer
    {"status": "ok", "event_ids": [1], "commands_generated": 0},                      # the Rust server's
    {"status": "accepted", "commands": []},
    {"status": "accepted", "commands": None},
    "",
])
async def test_post_events_without_handed_over_commands_returns_none(peer, session, answer):
    peer.answer(BATCH, 202, answer)
    assert await plane(peer, session).post_events(7, reporter().started(), "w1", "k") == Handed()
    assert "eager" not in peer.hits(BATCH)[0][3]  # not asked for: not sent


async def test_post_events_says_when_the_execution_had_ended(peer, session):
    peer.answer(BATCH, 202, {"status": "accepted", "event_ids": [], "commands": [], "ended": True})
    got = await plane(peer, session).post_events(7, reporter().started(), "w1", "k",
                                                  eager=EagerRequest(slots=1, pool="p"))
    assert got == Handed(commands=[], ended=True)


async def test_post_events_skips_an_unreadable_handed_over_command(peer, session):
    peer.answer(BATCH, 202, {"commands": [{"node_name": "no execution id"}, {**COMMAND, "started": True}]})
    got = await plane(peer, session).post_events(7, reporter().started(), "w1", "k",
                                                  eager=EagerRequest(slots=1, pool="p"))
    assert [c.event_id for c in got.commands] == [42]


async def test_single_event_fallback_hands_over_nothing(peer, session):
    peer.answer(BATCH, 404, "404: Not Found")
    peer.default("/api/events", 200, {"status": "ok", "event_id": 1})
    got = await plane(peer, session).post_events(7, reporter().started(), "w1", "k",
                                                  eager=EagerRequest(slots=1, pool="p"))
    assert got == Handed()


async def test_run_child_polls_the_cheap_check_and_reads_the_steps_once_the_child_ended(peer, session):
    check, status = "/api/executions/{execution_id}/cancellation-check", "/api/executions/{execution_id}/status"
    peer.answer("/api/execute", 200, {"execution_id": "9"})
    peer.answer(check, 200, {"status": "RUNNING", "completed": False, "failed": False, "cancelled": False}, times=2)
    # NoETL's server says failed after a command failure the child routes on: the status decides
    peer.answer(check, 200, {"status": "FAILED", "completed": False, "failed": True, "cancelled": False})
    peer.answer(status, 200, {"status": "RUNNING", "completed": False})
    peer.default(check, 200, {"status": "COMPLETED", "completed": True, "failed": False, "cancelled": False})
    peer.default(status, 200, {"status": "COMPLETED", "completed": True, "steps": {"end": {"ok": 1}}})
    sleeps = Sleeps()
    child = await plane(peer, session, sleeps).run_child("sub", {"a": 1}, 5, timeout=30)
    assert child["steps"] == {"end": {"ok": 1}}
    assert len(peer.hits(check)) == 4 and len(peer.hits(status)) == 2 and len(sleeps.calls) == 3
    assert peer.hits(status)[-1][1] == "/api/executions/9/status?steps=true"
    assert peer.hits("/api/execute")[0][3] == {"path": "sub", "workload": {"a": 1}, "parent_execution_id": "5"}
