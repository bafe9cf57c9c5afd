"""NoETL's frames routes (cursor-loop frames): `POST /api/stages/{stage_id}/frames/claim`,
`POST /api/frames/{frame_id}/heartbeat`, `POST /api/frames/{frame_id}/commit`. Request and answer
shapes are NoETL's (noetl/server/api/frames/schema.py and endpoint.py), bounds included: a lease is
5 to 3600 seconds, a claim asks for 1 to 100 frames."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

Worker = Annotated[str, msgspec.Meta(pattern=r"\S")]
LeaseSeconds = Annotated[int, msgspec.Meta(ge=5, le=3600)]
Count = Annotated[int, msgspec.Meta(ge=0)]
# Ids as NoETL's worker sends them: a number, or its decimal string.
AnyId = int | Annotated[str, msgspec.Meta(pattern=r"^\d+$")]


class FrameClaimRequest(msgspec.Struct, kw_only=True):
    """Claim the stage's next frame, or the one `cursor` names by its claim key
    (`worker_slot_id`, `frame_index`), minting it on first use."""

    worker_id: Worker
    command_id: AnyId | None = None
    requested_count: Annotated[int, msgspec.Meta(ge=1, le=100)] = 1
    lease_seconds: LeaseSeconds = 60
    cursor: dict[str, Any] = {}
    frame_policy: dict[str, Any] = {}
    locality: dict[str, Any] = {}


class FrameHeartbeatRequest(msgspec.Struct, kw_only=True):
    """Extend the lease of a frame this worker holds; the first RUNNING one logs `frame.started`."""

    worker_id: Worker
    lease_seconds: LeaseSeconds = 60
    status: str = "RUNNING"


class FrameCommitRequest(msgspec.Struct, kw_only=True):
    """End a frame this worker holds: FAILED logs `frame.failed`, anything else `frame.committed`."""

    worker_id: Worker
    status: str = "COMPLETED"
    cursor: dict[str, Any] = {}
    row_count: Count = 0
    output_ref: dict[str, Any] | None = None
    events_emitted: Count = 0
    error: str | None = None


class FrameOut(msgspec.Struct, kw_only=True):
    """A frame as NoETL's routes answer it (ids as numbers, as its server sends them)."""

    frame_id: int
    stage_id: int
    execution_id: int
    status: str
    cursor: dict[str, Any]
    lease_until: str | None
    owner_worker: str | None
    parent_frame_id: int | None
    command_id: int | None
    claimed_event_id: int | None
    terminal_event_id: int | None
    row_count: int
    output_ref: dict[str, Any] | None
    events_emitted: int
    attempts: int = 0
    event_id: int | None = None


class FrameClaimResponse(msgspec.Struct, kw_only=True):
    status: str = "ok"
    frames: list[FrameOut] = []


class FrameResponse(msgspec.Struct, kw_only=True):
    status: str = "ok"
    frame: FrameOut
