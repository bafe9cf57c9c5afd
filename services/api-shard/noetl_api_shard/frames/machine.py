"""The life of a frame, as NoETL's frames routes decide it (noetl/server/api/frames/endpoint.py),
kept apart from SQL so each rule can be tested on its own.

    PENDING --claim--> CLAIMED --heartbeat RUNNING--> RUNNING --heartbeat--> RUNNING (lease extended)
    CLAIMED/RUNNING --commit--> COMPLETED | FAILED
    CLAIMED/RUNNING, lease lapsed --another worker's claim--> frame.abandoned, CLAIMED by it (attempt+1)

A lapsed lease changes nothing by itself: the frame is abandoned when another worker claims it
(NoETL's rule; the command's own lease and takeover bring that worker). Its owner may still
heartbeat or commit until then. NoETL's recovery policy (`whole_frame`, max_attempts default 3) is
applied: a lapsed frame already claimed max_attempts times fails instead of being claimed again.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import msgspec

from noetl_common.errors import ApiError
from noetl_common.vocabulary import EventType

OPEN = ("CLAIMED", "RUNNING")
TERMINAL = ("COMPLETED", "FAILED")
HEARTBEAT_STATUSES = OPEN
DEFAULT_MAX_ATTEMPTS = 3


class Frame(msgspec.Struct, frozen=True, kw_only=True):
    """What the rules need of a frame row (read under its row lock, `now` the database's clock)."""

    frame_id: int
    status: str
    owner_worker: str | None
    lease_until: datetime | None
    attempts: int


class ClaimAction(enum.Enum):
    MINT = "mint"            # no frame under that claim key yet: create it, then claim it
    CLAIM = "claim"          # a pending frame
    RENEW = "renew"          # already this worker's: extend the lease, log nothing new
    RECLAIM = "reclaim"      # another worker's lease lapsed: frame.abandoned, then claim it
    EXHAUSTED = "exhausted"  # lapsed, and claimed max_attempts times already: the frame fails


def lapsed(frame: Frame, now: datetime) -> bool:
    return frame.lease_until is None or frame.lease_until < now


def on_claim(frame: Frame | None, worker: str, now: datetime, max_attempts: int) -> ClaimAction:
    if frame is None:
        return ClaimAction.MINT
    if frame.status == "PENDING":
        return ClaimAction.CLAIM
    if frame.status in OPEN:
        if frame.owner_worker == worker:
            return ClaimAction.RENEW  # it is asking, so it is alive (NoETL's idempotent re-claim)
        if not lapsed(frame, now):
            raise ApiError(409, f"frame {frame.frame_id} is held by worker {frame.owner_worker!r} until "
                                f"{frame.lease_until.isoformat() if frame.lease_until else '?'}",
                           "frame_claim_conflict", frame_id=str(frame.frame_id), owner_worker=frame.owner_worker)
        return ClaimAction.EXHAUSTED if frame.attempts >= max_attempts else ClaimAction.RECLAIM
    raise ApiError(409, f"frame {frame.frame_id} is already {frame.status}", "frame_already_terminal",
                   frame_id=str(frame.frame_id), frame_status=frame.status)


def _held_by(frame: Frame | None, frame_id: int, worker: str) -> Frame:
    """The frame, if `worker` may still act on it (NoETL's conflict answers otherwise)."""
    if frame is None:
        raise ApiError(404, f"active frame not found: {frame_id}", "not_found")
    if frame.status in TERMINAL:
        raise ApiError(409, f"frame {frame_id} is already {frame.status}", "frame_already_terminal",
                       frame_id=str(frame_id), frame_status=frame.status)
    if frame.owner_worker and frame.owner_worker != worker:
        raise ApiError(409, f"frame {frame_id} belongs to worker {frame.owner_worker!r}, not {worker!r}",
                       "frame_owner_mismatch", frame_id=str(frame_id), owner_worker=frame.owner_worker)
    if frame.status not in OPEN:
        raise ApiError(409, f"frame {frame_id} is {frame.status}, not claimed", "frame_not_active",
                       frame_id=str(frame_id), frame_status=frame.status)
    return frame


def on_heartbeat(frame: Frame | None, frame_id: int, worker: str, status: str) -> EventType:
    """The event a heartbeat logs: `frame.started` when it first says RUNNING."""
    if status not in HEARTBEAT_STATUSES:
        raise ApiError(422, f"status must be one of {', '.join(HEARTBEAT_STATUSES)}, got {status!r}",
                       "invalid_status", field="status")
    held = _held_by(frame, frame_id, worker)
    return EventType.FRAME_STARTED if held.status != "RUNNING" and status == "RUNNING" else EventType.FRAME_HEARTBEAT


def on_commit(frame: Frame | None, frame_id: int, worker: str, status: str) -> tuple[str, EventType]:
    """(terminal status, event): FAILED is frame.failed, anything else COMPLETED (NoETL's rule)."""
    _held_by(frame, frame_id, worker)
    if status.upper() == "FAILED":
        return "FAILED", EventType.FRAME_FAILED
    return "COMPLETED", EventType.FRAME_COMMITTED


def max_attempts_of(policy: Any) -> int:
    """NoETL's recovery policy: `frame.max_attempts`, default 3, at least 1."""
    raw = policy.get("max_attempts") if isinstance(policy, dict) else None
    try:
        return max(1, int(raw if raw is not None else DEFAULT_MAX_ATTEMPTS))
    except (TypeError, ValueError):
        return DEFAULT_MAX_ATTEMPTS


def recovery(policy: Any) -> dict[str, Any]:
    """What frame events say of the recovery policy (NoETL's `recovery` meta)."""
    return {"retry_mode": "whole_frame", "row_split_retry": False, "max_attempts": max_attempts_of(policy)}


def claim_key(cursor: dict[str, Any]) -> tuple[str, str] | None:
    """(worker_slot_id, frame_index) when the cursor names both: the frame's unique key in its stage."""
    slot, index = cursor.get("worker_slot_id"), cursor.get("frame_index")
    if slot is None or index is None:
        return None
    return str(slot), str(index)
