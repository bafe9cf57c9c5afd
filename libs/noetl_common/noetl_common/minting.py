"""The minting rule that keeps shard-affine ids correct while the shard map changes.

An id belongs to `shard_for(id, count_at(timestamp_of(id)))` under the *final* map, which no
shard can see. What a shard can know: epochs are only ever committed `grace` in the future of
the committing moment, and reading the map is serialised against committing it (see
`store/shard_map.py`). So a map read at `confirmed_at` lacks only epochs starting at or after
`confirmed_at + grace`, and every id stamped before that horizon has the same owner under the
map we hold as under any later one. The rule: mint only ids stamped before the horizon (minus an
allowance for clock skew between hosts); near it, reload the map first (`ShardMapKeeper`); if the
map cannot be reloaded, refuse (503) rather than guess.

A shard that an epoch removes (scale in) is a member only until that epoch. It still has to mint
event and command ids for the executions it is finishing, so from the moment it learns of the
drain its ids stop following the clock: each millisecond before the drain epoch yields up to
4096 candidates (about 4096/n owned ids), enough for millions of ids after a 10 s grace.
"""

from __future__ import annotations

import time

import msgspec

from .errors import ApiError
from .ids import Snowflake, timestamp_ms
from .sharding import ShardMap, shard_for

# Allowance for clocks of different hosts disagreeing (the epoch is stamped with the committing
# shard's clock, ids with the minting shard's). NTP keeps hosts within milliseconds.
CLOCK_SKEW_ALLOWANCE_MS = 250


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class ConfirmedMap(msgspec.Struct, frozen=True):
    """A shard map and the moment (unix ms, taken under the read lock) it was known complete."""

    shard_map: ShardMap
    confirmed_at_ms: int


class MapStale(ApiError):
    """The map is too old to mint the next id safely; reload first (HTTP 503, retried)."""

    def __init__(self, shard: int, horizon_ms: int) -> None:
        super().__init__(503, f"shard {shard} cannot mint ids: its shard map is confirmed only up to "
                              f"{horizon_ms} ms and could not be reloaded", "shard_map_stale",
                         headers={"Retry-After": "1"}, shard=shard)


class NotMember(ApiError):
    """The shard owns no ids now: not yet added, or drained (HTTP 503)."""

    def __init__(self, shard: int, reason: str) -> None:
        super().__init__(503, f"shard {shard} cannot mint ids: {reason}", "shard_draining",
                         headers={"Retry-After": "1"}, shard=shard)


class ConfirmedView:
    """The map this process believes in, with when it was confirmed. Replacing it never moves
    `confirmed_at` back (two reloads racing keep the later one)."""

    def __init__(self, initial: ConfirmedMap) -> None:
        self.confirmed = initial

    @property
    def current(self) -> ShardMap:
        return self.confirmed.shard_map

    def confirm(self, new: ConfirmedMap) -> bool:
        """Adopt `new` if it is at least as recent; True when the map itself changed."""
        if new.confirmed_at_ms < self.confirmed.confirmed_at_ms:
            return False
        changed = new.shard_map != self.confirmed.shard_map
        self.confirmed = new
        return changed

    def count_at(self, unix_ms: int) -> int:
        return self.confirmed.shard_map.count_at(unix_ms)


class GuardedMinter:
    """Mints ids owned by `shard` under every map that can still be committed."""

    def __init__(self, generator: Snowflake, shard: int, view: ConfirmedView, grace_ms: int,
                 skew_ms: int = CLOCK_SKEW_ALLOWANCE_MS) -> None:
        self._generator = generator
        self._shard = shard
        self._view = view
        self._grace_ms = grace_ms
        self._skew_ms = skew_ms

    def horizon_ms(self) -> int:
        """Ids stamped before this have their final owner under the map held now."""
        return self._view.confirmed.confirmed_at_ms + self._grace_ms - self._skew_ms

    def next_id(self) -> int:
        confirmed = self._view.confirmed
        shard_map = confirmed.shard_map
        horizon = confirmed.confirmed_at_ms + self._grace_ms - self._skew_ms
        until: list[int | None] = [None]

        def plan(last_ms: int, clock_ms: int) -> int | None:
            at = max(clock_ms, last_ms)
            if shard_map.is_member(self._shard, at) and shard_map.member_until(self._shard, at) is None:
                return None  # the usual case: follow the clock
            # A known epoch ends this shard's membership (draining): live on the milliseconds
            # before it, from the last one used if that is inside the membership.
            start = at
            if last_ms and shard_map.is_member(self._shard, last_ms) and (
                    not shard_map.is_member(self._shard, at)
                    or shard_map.member_until(self._shard, last_ms) == shard_map.member_until(self._shard, at)):
                start = last_ms  # same membership as now (or the one a drain just ended)
            if not shard_map.is_member(self._shard, start):
                raise NotMember(self._shard, f"the shard map has {shard_map.count_at(at)} shards now")
            until[0] = shard_map.member_until(self._shard, start)
            return start

        def accept(candidate: int) -> bool:
            stamp = timestamp_ms(candidate)
            if until[0] is not None and stamp >= until[0]:
                raise NotMember(self._shard, f"no ids left before the epoch at {until[0]} that removes it")
            if stamp >= horizon:
                raise MapStale(self._shard, horizon)
            return shard_for(candidate, shard_map.count_at(stamp)) == self._shard

        return self._generator.next_matching(accept, plan=plan)

    __call__ = next_id
