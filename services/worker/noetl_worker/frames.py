"""NoETL's frames runtime, the worker's side (as noetl/worker/cursor_worker.py does it): a command
that carries a `frame` (one frame of a `process: frame` cursor loop: all its claimed rows) runs
under a lease on that frame. Before the tool: claim the frame (`POST /api/stages/{stage}/frames/
claim`, `frame.dispatched`) and say RUNNING (`frame.started`); while the tool runs: a heartbeat
every `heartbeat_seconds` extends the lease (`frame.heartbeat`), so work longer than the lease is
not taken for dead; after it: commit (`frame.committed`, or `frame.failed`). A worker that stops
heartbeating loses the frame once its lease lapses: the command's takeover claims it again
(`frame.abandoned`) and runs its rows anew."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Coroutine

import msgspec

from .client import Backoff, ControlPlane, ControlPlaneError
from .executor import Outcome
from .wire import Command

log = logging.getLogger("noetl.worker.frames")

# A heartbeat is tried briefly: the next one comes soon, and the lease outlasts a few misses.
HEARTBEAT_BACKOFF = Backoff(attempts=2, first=0.25, cap=1.0)
# A taken-over command waits this long past a lease for the previous holder's frame to lapse.
CLAIM_MARGIN_SECONDS = 5.0


class FrameSpec(msgspec.Struct, kw_only=True):
    """The command's `frame` (noetl_common.engine IssueCommand.frame)."""

    stage_id: str
    frame_index: int
    worker_slot_id: str
    lease_seconds: int
    heartbeat_seconds: float
    policy: dict[str, Any] = {}


class FrameLease:
    def __init__(self, plane: ControlPlane, spec: FrameSpec, worker_id: str, command_id: int, rows: int) -> None:
        self.plane = plane
        self.spec = spec
        self.worker_id = worker_id
        self.command_id = command_id
        self.rows = rows
        self.frame: dict[str, Any] = {}

    @property
    def frame_id(self) -> Any:
        return self.frame.get("frame_id")

    async def run(self, work: Coroutine[Any, Any, Outcome]) -> Outcome:
        """`work` (the command's tool) under the frame's lease: claimed first, heartbeated while it
        runs, committed after. A frame that cannot be had fails the command without running it."""
        try:
            await self.claim()
        except ControlPlaneError as exc:
            work.close()
            log.info("command %s: frame not leased: %s", self.command_id, exc)
            return Outcome(ok=False, error=f"frame lease: {exc}")
        except BaseException:  # cancelled while waiting for the frame: the tool never starts
            work.close()
            raise
        beats = asyncio.create_task(self.keep())
        try:
            result = await work
        finally:
            beats.cancel()  # abandoned (cancelled) work leaves the frame to its lease
        await self.commit(result.ok, result.error)
        return result

    async def claim(self) -> None:
        """Lease the frame and say it runs; raises ControlPlaneError when it cannot be had. A frame
        still leased to another worker (the one this command was taken over from: its lease may
        outlast the command's) is asked for again until that lease must have lapsed."""
        s = self.spec
        deadline = asyncio.get_running_loop().time() + s.lease_seconds + CLAIM_MARGIN_SECONDS
        while True:
            try:
                answer = await self.plane.frame_call(f"/api/stages/{s.stage_id}/frames/claim", {
                    "worker_id": self.worker_id, "command_id": str(self.command_id), "requested_count": 1,
                    "lease_seconds": s.lease_seconds, "frame_policy": s.policy,
                    "cursor": {"row_count": self.rows, "frame_index": s.frame_index,
                               "worker_slot_id": s.worker_slot_id}})
                break
            except ControlPlaneError as exc:
                if "frame_claim_conflict" not in str(exc) or asyncio.get_running_loop().time() > deadline:
                    raise
            await asyncio.sleep(1.0)
        frames = answer.get("frames") or []
        if not frames or not isinstance(frames[0], dict):
            raise ControlPlaneError(f"stage {s.stage_id} answered no frame to claim", None, retryable=False)
        self.frame = frames[0]
        await self.beat()

    async def beat(self, backoff: Backoff | None = None) -> None:
        await self.plane.frame_call(f"/api/frames/{self.frame_id}/heartbeat", {
            "worker_id": self.worker_id, "status": "RUNNING", "lease_seconds": self.spec.lease_seconds},
            backoff=backoff)

    async def keep(self) -> None:
        """Heartbeat until cancelled. A refusal (the frame was reclaimed or ended) stops it; a
        miss is logged and the next beat tried (NoETL's worker does the same)."""
        while True:
            await asyncio.sleep(max(0.1, self.spec.heartbeat_seconds))
            try:
                await self.beat(HEARTBEAT_BACKOFF)
            except ControlPlaneError as exc:
                if exc.status == 409:
                    log.warning("frame %s is no longer this worker's: %s", self.frame_id, exc)
                    return
                log.warning("heartbeat of frame %s failed (lease not extended): %s", self.frame_id, exc)

    async def commit(self, ok: bool, error: str | None) -> None:
        """frame.committed (or frame.failed). A refusal is logged: the frame was reclaimed after
        its lease lapsed, and that claim's run is the one that counts."""
        try:
            await self.plane.frame_call(f"/api/frames/{self.frame_id}/commit", {
                "worker_id": self.worker_id, "status": "COMPLETED" if ok else "FAILED", "row_count": self.rows,
                "events_emitted": self.rows, "cursor": self.frame.get("cursor") or {},
                "error": None if ok else (error or "frame work failed")[:2000]})
        except ControlPlaneError as exc:
            log.warning("commit of frame %s failed: %s", self.frame_id, exc)


def lease_for(plane: ControlPlane, command: Command, worker_id: str, command_id: int) -> FrameLease | None:
    """The frame lease a command runs under, None for every other command. A malformed `frame`
    is the control plane's mistake, not the step's: it raises ValueError naming it."""
    raw = command.context.get("frame")
    if raw is None:
        return None
    try:
        spec = msgspec.convert(raw, FrameSpec, strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(f"command {command_id}: unreadable frame: {exc}") from None
    item = command.context.get("item")
    return FrameLease(plane, spec, worker_id, command_id, len(item) if isinstance(item, list) else 1)
