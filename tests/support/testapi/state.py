"""What the endpoints remember between requests. One instance per app (kept in the app, never at
module level), so two servers in one process don't share counters."""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

MAX_PROBE_EVENTS = 200


class Probe:
    """Overlap of concurrent probe requests: how many were in flight at once (`max_active`) is
    what the blocking/concurrency playbooks check."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.reset_counts()

    def reset_counts(self) -> None:
        self.started = self.completed = self.active = self.max_active = 0
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_PROBE_EVENTS)

    def snapshot(self) -> dict[str, int]:
        return {"started": self.started, "completed": self.completed, "active": self.active,
                "max_active": self.max_active}

    async def enter(self, label: str, delay: float) -> tuple[int, int]:
        async with self.lock:
            self.started += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.events.append({"phase": "start", "request_id": self.started, "label": label,
                                "delay_seconds": delay, "ts": time.time(), "active": self.active})
            return self.started, self.active

    async def leave(self, request_id: int, label: str, duration: float) -> dict[str, int]:
        async with self.lock:
            self.active = max(0, self.active - 1)
            self.completed += 1
            self.events.append({"phase": "end", "request_id": request_id, "label": label,
                                "duration_seconds": round(duration, 4), "ts": time.time(), "active": self.active})
            return self.snapshot()


class RateWindow:
    """Requests seen in the last second, for the rate-limited endpoint."""

    def __init__(self) -> None:
        self.seen: collections.deque[float] = collections.deque()

    def admit(self, limit: int, now: float) -> float | None:
        """None when the request may pass (and it is counted); else seconds until a slot frees."""
        while self.seen and now - self.seen[0] >= 1.0:
            self.seen.popleft()
        if len(self.seen) >= max(limit, 1):
            return 1.0 - (now - self.seen[0])
        self.seen.append(now)
        return None


class ApiState:
    def __init__(self) -> None:
        self.probe = Probe()
        self.flaky_attempts: collections.Counter[int] = collections.Counter()
        self.rate = RateWindow()
        self.requests: collections.Counter[str] = collections.Counter()  # per path, for tests
