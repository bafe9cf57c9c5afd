"""64-bit snowflake ids: 41 bits of ms since 2024-01-01, 10 bits of node, 12 bits of sequence.

Ids are minted in the application, never by the database. A shard mints only ids it owns
(shard-affine), so any id routes to its shard by hash alone.
"""

from __future__ import annotations

import re

import threading
import time
from typing import Callable

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z, shared with NoETL
NODE_BITS = 10
SEQUENCE_BITS = 12
MAX_NODE = (1 << NODE_BITS) - 1
MAX_SEQUENCE = (1 << SEQUENCE_BITS) - 1
TIMESTAMP_SHIFT = NODE_BITS + SEQUENCE_BITS
MAX_TIMESTAMP = (1 << 41) - 1


def timestamp_ms(snowflake: int) -> int:
    """Unix milliseconds at which the id was minted."""
    return (snowflake >> TIMESTAMP_SHIFT) + EPOCH_MS


def node_of(snowflake: int) -> int:
    return (snowflake >> SEQUENCE_BITS) & MAX_NODE


def compose(unix_ms: int, node: int, sequence: int) -> int:
    offset = unix_ms - EPOCH_MS
    if not 0 <= offset <= MAX_TIMESTAMP:
        raise ValueError(f"timestamp {unix_ms} is outside the snowflake range")
    return (offset << TIMESTAMP_SHIFT) | ((node & MAX_NODE) << SEQUENCE_BITS) | (sequence & MAX_SEQUENCE)


_DECIMAL = re.compile(r"-?[0-9]+")
MAX_ID = (1 << 63) - 1


def _at_most(limit: str) -> str:
    """A regex (no anchors) for the decimal strings of exactly len(limit) digits whose value is at
    most `limit`: one branch per digit position that can be smaller, plus `limit` itself."""
    branches = [limit]
    for i, digit in enumerate(limit):
        if digit != "0":
            rest = len(limit) - i - 1
            branches.append(limit[:i] + f"[0-{int(digit) - 1}]" + (f"[0-9]{{{rest}}}" if rest else ""))
    return "|".join(branches)


# The digits of an id, 0..2^63-1, as the API documents it (parse_id also takes a sign and blanks
# around): a 19-digit string can overflow, so [0-9]{1,19} is not enough.
ID_DIGITS = rf"(?:[0-9]{{1,18}}|{_at_most(str(MAX_ID))})"
ID_PATTERN = rf"^{ID_DIGITS}$"


def parse_id(value: object, field: str = "id") -> int:
    """Accept an int or a decimal string (NoETL clients send both); raise ValueError naming the field."""
    if isinstance(value, bool):
        raise ValueError(f"{field} must be an integer id, got a boolean")
    if isinstance(value, int):
        result = value
    elif isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        # ASCII digits only: str.isdigit() also accepts '¹' (which int() refuses) and other scripts' digits.
        result = int(value.strip())
    else:
        raise ValueError(f"{field} must be an integer id, got {value!r}")
    if not -(1 << 63) <= result < (1 << 63):
        raise ValueError(f"{field} is out of the 64-bit range")
    return result


class Snowflake:
    """Thread-safe, monotonic generator. If the clock steps back, the last millisecond is reused
    rather than emitting a lower id; on sequence overflow it moves on to the next millisecond."""

    def __init__(self, node_id: int, clock: Callable[[], int] | None = None) -> None:
        if not 0 <= node_id <= MAX_NODE:
            raise ValueError(f"node id must be within 0..{MAX_NODE}, got {node_id}")
        self.node_id = node_id
        self._clock = clock or (lambda: time.time_ns() // 1_000_000)
        self._lock = threading.Lock()
        self._last_ms = 0
        self._sequence = 0

    def next_id(self) -> int:
        with self._lock:
            return self._next_locked()

    def next_matching(self, accept: Callable[[int], bool], max_tries: int = 1 << 20,
                      plan: Callable[[int, int], int | None] | None = None) -> int:
        """The next id (in this generator's order) for which `accept` holds. `accept` may raise
        to refuse minting altogether. `plan(last_ms, clock_ms)`, asked once under the lock, may
        return a millisecond to go on from instead of following the clock (see `_next_locked`)."""
        with self._lock:
            frozen_from = plan(self._last_ms, self._clock()) if plan is not None else None
            for _ in range(max_tries):
                candidate = self._next_locked(frozen_from)
                if accept(candidate):
                    return candidate
        raise RuntimeError("no acceptable id found; is the predicate satisfiable?")

    def resume_after(self, snowflake: int) -> None:
        """Never mint at or below `snowflake` (e.g. the newest id a restarted process finds in its
        database); the next id is at least one millisecond past it."""
        with self._lock:
            self._last_ms = max(self._last_ms, timestamp_ms(snowflake) + 1)
            self._sequence = MAX_SEQUENCE  # so the next id borrows the millisecond after _last_ms

    @property
    def last_ms(self) -> int:
        return self._last_ms

    def _next_locked(self, frozen_from: int | None = None) -> int:
        # frozen_from: ignore the clock; the millisecond moves only when its 4096 sequence values
        # are used up, so ids stay monotonic while their timestamps fall behind the clock (a
        # draining shard lives on the milliseconds left before the epoch that removes it).
        now = max(self._last_ms, frozen_from) if frozen_from is not None else max(self._clock(), self._last_ms)
        if now == self._last_ms:
            self._sequence += 1
            if self._sequence > MAX_SEQUENCE:
                # Borrow the next millisecond instead of sleeping; the clock catches up quickly.
                now = self._last_ms + 1
                self._sequence = 0
        else:
            self._sequence = 0
        self._last_ms = now
        return compose(now, self.node_id, self._sequence)


class ShardIdMinter:
    """Mints ids owned by one shard under the shard map in force when they are minted."""

    def __init__(self, generator: Snowflake, shard_index: int, count_at: Callable[[int], int]) -> None:
        self._generator = generator
        self._shard_index = shard_index
        self._count_at = count_at

    def next_id(self) -> int:
        from .sharding import shard_for  # local import: sharding imports timestamp_ms from here

        def owned(candidate: int) -> bool:
            return shard_for(candidate, self._count_at(timestamp_ms(candidate))) == self._shard_index

        return self._generator.next_matching(owned)

    __call__ = next_id


def mint_for_shard(shard: int, count: int, generator: Snowflake | None = None) -> int:
    """One id that `shard_for(id, count)` maps to `shard`."""
    if not 0 <= shard < max(count, 1):
        raise ValueError(f"shard {shard} is outside 0..{count - 1}")
    gen = generator or Snowflake(node_id=shard & MAX_NODE)
    return ShardIdMinter(gen, shard, lambda _ms: count).next_id()
