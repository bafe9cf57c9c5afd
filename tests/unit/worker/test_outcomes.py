"""Outcome reporting against a scripted HTTP peer: in-process re-posting for handed-over commands
(same key, eager asked again each time), refusals, a refused result turned into a failure, stop."""

from __future__ import annotations

import asyncio

from noetl_worker.client import Backoff, ControlPlane
from noetl_worker.events import Reporter
from noetl_worker.outcomes import (REPOST_BACKOFF, Accepted, NotTaken, Unreported, post_outcome, post_until_taken,
                                   repost_delay)
from noetl_worker.wire import EagerRequest

BATCH = "/api/events/batch"
QUICK = Backoff(first=0.01, cap=0.02)


async def no_sleep(_: float) -> None:
    return None


def outcome(base_url: str, ok: bool = True) -> Unreported:
    r = Reporter(execution_id=7, step="s", command_id="42", worker_id="w1", attempt=1)
    events = r.succeeded({"v": 1}, "") if ok else r.failed("boom", "")
    return Unreported(base_url=base_url, execution_id=7, events=events, key=r.key("ok" if ok else "error"))


def control_plane(peer, session) -> ControlPlane:
    return ControlPlane(peer.url, session, backoff=Backoff(attempts=1), sleep=no_sleep)


async def test_reposted_with_the_same_key_until_taken(peer, session):
    peer.answer(BATCH, 503, {"code": "queue_unavailable"}, times=2)
    peer.answer(BATCH, 202, {"status": "accepted", "commands": []})
    failures: list[NotTaken] = []
    asked = iter(range(1, 10))
    posted = await post_until_taken(control_plane(peer, session), outcome(peer.url), "w1",
                                    lambda: EagerRequest(slots=next(asked), pool="p"), asyncio.Event(),
                                    failures.append, QUICK)
    assert isinstance(posted, Accepted) and posted.commands == []
    hits = peer.hits(BATCH)
    assert len(hits) == 3 and len(failures) == 2 and all(f.retryable for f in failures)
    assert {h[2]["Idempotency-Key"] for h in hits} == {"w1:7:42:1:ok"}
    assert [h[3]["eager"]["slots"] for h in hits] == [1, 2, 3]  # asked afresh each time


async def test_a_refusal_ends_the_reposting(peer, session):
    peer.answer(BATCH, 409, {"code": "already_terminal", "message": "Command status: COMPLETED"})
    posted = await post_until_taken(control_plane(peer, session), outcome(peer.url, ok=False), "w1",
                                    lambda: None, asyncio.Event(), lambda _: None, QUICK)
    assert isinstance(posted, NotTaken) and not posted.retryable and len(peer.hits(BATCH)) == 1


async def test_stopping_ends_the_reposting(peer, session):
    peer.default(BATCH, 503, {"code": "queue_unavailable"})
    stopping = asyncio.Event()
    stopping.set()
    posted = await post_until_taken(control_plane(peer, session), outcome(peer.url), "w1", lambda: None,
                                    stopping, lambda _: None, QUICK)
    assert isinstance(posted, NotTaken) and posted.retryable and len(peer.hits(BATCH)) == 1


async def test_a_refused_result_becomes_a_failure(peer, session):
    peer.answer(BATCH, 422, {"code": "too_large", "message": "batch over 2 MiB"})
    peer.answer(BATCH, 202, {"status": "accepted"})
    posted = await post_outcome(control_plane(peer, session), outcome(peer.url), "w1", None)
    assert isinstance(posted, Accepted)
    failure = peer.hits(BATCH)[1]
    assert [e["event_type"] for e in failure[3]["events"]] == ["call.error", "command.failed"]
    assert "refused this step's result" in failure[3]["events"][0]["payload"]["error"]
    assert failure[2]["Idempotency-Key"] == "w1:7:42:1:ok:refused"


def test_reposts_stay_seconds_apart_however_long_the_shard_is_down():
    # The lease runs on while the shard is down: once it is back, the outcome must arrive soon.
    delays = [repost_delay(REPOST_BACKOFF, attempt) for attempt in range(200)]
    assert delays[0] <= 0.6 and max(delays) <= 6.0
