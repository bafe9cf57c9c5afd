"""The life of a frame (noetl_api_shard.frames.machine): claim, lease, heartbeat, abandon, commit."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from noetl_api_shard.frames import machine
from noetl_api_shard.frames.machine import ClaimAction, Frame
from noetl_common.errors import ApiError
from noetl_common.vocabulary import EventType

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)


def frame(status: str = "CLAIMED", owner: str | None = "w1", lease_in: float | None = 30.0,
          attempts: int = 1) -> Frame:
    lease = NOW + timedelta(seconds=lease_in) if lease_in is not None else None
    return Frame(frame_id=7, status=status, owner_worker=owner, lease_until=lease, attempts=attempts)


def refused(call, code: str, status: int = 409) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call()
    assert (caught.value.status, caught.value.code) == (status, code)
    return caught.value


def test_a_claim_mints_a_frame_under_a_new_key_and_takes_a_pending_one():
    assert machine.on_claim(None, "w1", NOW, 3) is ClaimAction.MINT
    assert machine.on_claim(frame("PENDING", owner=None, lease_in=None, attempts=0), "w1", NOW, 3) is ClaimAction.CLAIM


def test_a_live_lease_keeps_the_frame_its_owners():
    assert machine.on_claim(frame(), "w1", NOW, 3) is ClaimAction.RENEW  # the owner asking again
    error = refused(lambda: machine.on_claim(frame(), "w2", NOW, 3), "frame_claim_conflict")
    assert "w1" in error.message and error.extra["owner_worker"] == "w1"
    # RUNNING (heartbeated) is held the same way
    refused(lambda: machine.on_claim(frame("RUNNING"), "w2", NOW, 3), "frame_claim_conflict")


def test_a_lapsed_lease_lets_another_worker_reclaim_the_frame_until_attempts_run_out():
    lapsed = frame("RUNNING", lease_in=-0.001, attempts=1)
    assert machine.lapsed(lapsed, NOW)
    assert machine.on_claim(lapsed, "w2", NOW, 3) is ClaimAction.RECLAIM
    assert machine.on_claim(frame("CLAIMED", lease_in=None, attempts=2), "w2", NOW, 3) is ClaimAction.RECLAIM
    assert machine.on_claim(frame("RUNNING", lease_in=-5, attempts=3), "w2", NOW, 3) is ClaimAction.EXHAUSTED
    # the owner itself asking is alive: it renews rather than abandoning its own frame
    assert machine.on_claim(lapsed, "w1", NOW, 3) is ClaimAction.RENEW


def test_a_finished_frame_takes_no_claim():
    for status in ("COMPLETED", "FAILED"):
        refused(lambda s=status: machine.on_claim(frame(s, lease_in=None), "w1", NOW, 3), "frame_already_terminal")


def test_heartbeats_start_then_extend_and_only_the_owner_may_send_them():
    assert machine.on_heartbeat(frame("CLAIMED"), 7, "w1", "RUNNING") is EventType.FRAME_STARTED
    assert machine.on_heartbeat(frame("RUNNING"), 7, "w1", "RUNNING") is EventType.FRAME_HEARTBEAT
    assert machine.on_heartbeat(frame("CLAIMED"), 7, "w1", "CLAIMED") is EventType.FRAME_HEARTBEAT
    # a lapsed lease does not stop its owner until someone reclaims the frame (NoETL's rule)
    assert machine.on_heartbeat(frame("RUNNING", lease_in=-60), 7, "w1", "RUNNING") is EventType.FRAME_HEARTBEAT
    refused(lambda: machine.on_heartbeat(frame("RUNNING", owner="w2"), 7, "w1", "RUNNING"), "frame_owner_mismatch")
    refused(lambda: machine.on_heartbeat(frame("COMPLETED"), 7, "w1", "RUNNING"), "frame_already_terminal")
    refused(lambda: machine.on_heartbeat(frame("PENDING", owner=None), 7, "w1", "RUNNING"), "frame_not_active")
    refused(lambda: machine.on_heartbeat(None, 7, "w1", "RUNNING"), "not_found", 404)
    error = refused(lambda: machine.on_heartbeat(frame(), 7, "w1", "DONE"), "invalid_status", 422)
    assert error.extra["field"] == "status"


def test_a_commit_ends_the_frame_once():
    assert machine.on_commit(frame("RUNNING"), 7, "w1", "COMPLETED") == ("COMPLETED", EventType.FRAME_COMMITTED)
    assert machine.on_commit(frame("RUNNING"), 7, "w1", "failed") == ("FAILED", EventType.FRAME_FAILED)
    assert machine.on_commit(frame("CLAIMED"), 7, "w1", "anything") == ("COMPLETED", EventType.FRAME_COMMITTED)
    refused(lambda: machine.on_commit(frame("COMPLETED"), 7, "w1", "COMPLETED"), "frame_already_terminal")
    refused(lambda: machine.on_commit(frame("RUNNING", owner="w2"), 7, "w1", "COMPLETED"), "frame_owner_mismatch")


def test_the_recovery_policy_and_the_claim_key():
    assert machine.recovery({}) == {"retry_mode": "whole_frame", "row_split_retry": False, "max_attempts": 3}
    assert machine.max_attempts_of({"max_attempts": "5"}) == 5
    assert machine.max_attempts_of({"max_attempts": 0}) == 1
    assert machine.max_attempts_of({"max_attempts": "x"}) == 3
    assert machine.claim_key({"worker_slot_id": 42, "frame_index": 0}) == ("42", "0")
    assert machine.claim_key({"frame_index": 0}) is None
