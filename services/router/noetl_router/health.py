"""Per-shard health: a small state machine fed by proxy outcomes and /readyz probes.

A shard turns unhealthy after `threshold` consecutive failures (connection errors or failed
probes) and healthy again on the first success. Unhealthy owners are answered 503 at once
rather than waited on; the prober is what brings them back.
"""

from __future__ import annotations

from typing import Callable


class ShardHealth:
    def __init__(self, threshold: int, healthy: bool = True) -> None:
        self.threshold = threshold
        self.healthy = healthy
        self.consecutive_failures = 0
        self.last_error = ""

    def success(self) -> bool:
        """Record a success; True when this flips the shard back to healthy."""
        flipped = not self.healthy
        self.healthy = True
        self.consecutive_failures = 0
        self.last_error = ""
        return flipped

    def failure(self, reason: str) -> bool:
        """Record a failure; True when this flips the shard to unhealthy."""
        self.consecutive_failures += 1
        self.last_error = reason
        if self.healthy and self.consecutive_failures >= self.threshold:
            self.healthy = False
            return True
        return False


class HealthBoard:
    """Health of every shard plus the round-robin cursor used to place new executions."""

    def __init__(self, shard_count: int, threshold: int,
                 on_change: Callable[[int, bool], None] | None = None) -> None:
        self.shards = [ShardHealth(threshold) for _ in range(shard_count)]
        self._on_change = on_change or (lambda _i, _h: None)
        self._next = 0
        for i in range(shard_count):
            self._on_change(i, True)

    def __len__(self) -> int:
        return len(self.shards)

    def ensure(self, shard: int) -> None:
        """Track shards up to `shard` (the fleet grew). New ones start unhealthy: they take
        requests once a probe has found them ready."""
        while len(self.shards) <= shard:
            state = ShardHealth(self.shards[0].threshold if self.shards else 3, healthy=False)
            state.last_error = "not probed yet"
            self.shards.append(state)
            self._on_change(len(self.shards) - 1, False)

    def is_healthy(self, shard: int) -> bool:
        return 0 <= shard < len(self.shards) and self.shards[shard].healthy

    def healthy_shards(self) -> list[int]:
        return [i for i, s in enumerate(self.shards) if s.healthy]

    def success(self, shard: int) -> None:
        if self.shards[shard].success():
            self._on_change(shard, True)

    def failure(self, shard: int, reason: str) -> None:
        if self.shards[shard].failure(reason):
            self._on_change(shard, False)

    def mark_down(self, shard: int, reason: str) -> None:
        """Straight to unhealthy (a start-up probe failed: no reason to wait for more evidence)."""
        state = self.shards[shard]
        state.consecutive_failures = max(state.consecutive_failures, state.threshold - 1)
        self.failure(shard, reason)

    def next_healthy(self, among: set[int] | None = None) -> int | None:
        """Round robin over healthy shards (of `among`, when given); None when there is none."""
        n = len(self.shards)
        for step in range(n):
            candidate = (self._next + step) % n
            if self.shards[candidate].healthy and (among is None or candidate in among):
                self._next = (candidate + 1) % n
                return candidate
        return None

    def snapshot(self) -> dict[str, dict[str, object]]:
        return {str(i): {"healthy": s.healthy, "consecutive_failures": s.consecutive_failures,
                         "last_error": s.last_error} for i, s in enumerate(self.shards)}
