"""The minting rule across epoch boundaries: simulated shards whose map refreshes are delayed or
missing mint concurrently while epochs are committed; every id they mint must belong to them
under the final map. The unguarded rule (mint under whatever map is held) fails the same test."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, Phase, event, find, given, settings, strategies as st

from noetl_common.ids import EPOCH_MS, Snowflake, timestamp_ms
from noetl_common.minting import ConfirmedMap, ConfirmedView, GuardedMinter, MapStale, NotMember
from noetl_common.sharding import Epoch, ShardMap, shard_for

GRACE_MS = 1_000
START_MS = EPOCH_MS + 1_000_000_000


@dataclass
class Clock:
    """Simulated wall clock shared by every simulated host (skew is covered by its own test)."""

    now: int = START_MS

    def __call__(self) -> int:
        return self.now


@dataclass
class Cluster:
    """The cluster table: epochs appended `grace` in the future of the committing moment. Reads
    and commits are atomic steps of the simulation, as the table lock makes them in Postgres."""

    clock: Clock
    shard_map: ShardMap = field(default_factory=lambda: ShardMap(epochs=(Epoch(0, 2),)))

    def commit(self, count: int) -> None:
        newest = self.shard_map.newest()
        if newest.shard_count == count:
            return
        start = max(self.clock.now + GRACE_MS, newest.effective_from_ms + 1)
        self.shard_map = ShardMap(epochs=(*self.shard_map.epochs, Epoch(start, count)))

    def read(self) -> ConfirmedMap:
        return ConfirmedMap(self.shard_map, self.clock.now)


@dataclass
class SimShard:
    index: int
    view: ConfirmedView
    mint: object
    in_flight: list[tuple[int, ConfirmedMap]] = field(default_factory=list)  # (apply at, read result)
    minted: list[int] = field(default_factory=list)
    refused: int = 0


def make_shards(cluster: Cluster, clock: Clock, count: int, guarded: bool) -> list[SimShard]:
    shards = []
    for i in range(count):
        view = ConfirmedView(cluster.read())
        gen = Snowflake(i, clock=clock)
        shards.append(SimShard(i, view, GuardedMinter(gen, i, view, GRACE_MS, skew_ms=0) if guarded
                               else unguarded_minter(gen, i, view)))
    return shards


def unguarded_minter(gen: Snowflake, shard: int, view: ConfirmedView):
    """The old rule (`ShardIdMinter`): own the id under whatever map is held, however old."""
    def mint() -> int:
        if view.count_at(gen.last_ms or START_MS) <= shard:  # it would search in vain (slowly)
            raise RuntimeError(f"shard {shard} owns no ids under the map it holds")
        return gen.next_matching(lambda c: shard_for(c, view.count_at(timestamp_ms(c))) == shard, max_tries=20_000)
    return mint


SHARDS = 4
# One step of the world: time passes, maybe an epoch is committed, and each shard maybe starts a
# map read (its answer arriving after a delay: slow network, GC pause, a missed NOTIFY) and
# maybe mints a few ids. Delays are mostly short, sometimes longer than the grace.
delay = st.one_of(st.integers(0, 300), st.integers(0, 3 * GRACE_MS))
shard_step = st.tuples(st.none() | delay, st.integers(0, 4))
step = st.tuples(st.integers(1, 300), st.none() | st.integers(1, SHARDS),
                 st.lists(shard_step, min_size=SHARDS, max_size=SHARDS))


def run_world(steps: list[tuple], guarded: bool) -> tuple[Cluster, list[SimShard]]:
    clock = Clock()
    cluster = Cluster(clock)
    shards = make_shards(cluster, clock, SHARDS, guarded)
    for dt, commit, per_shard in steps:
        clock.now += dt
        for shard in shards:  # deliver the reads whose delay is over
            due = [r for at, r in shard.in_flight if at <= clock.now]
            shard.in_flight = [(at, r) for at, r in shard.in_flight if at > clock.now]
            for result in due:
                shard.view.confirm(result)
        if commit is not None:
            cluster.commit(commit)
        for shard, (read_delay, mints) in zip(shards, per_shard):
            if read_delay is not None:
                shard.in_flight.append((clock.now + read_delay, cluster.read()))
            for _ in range(mints):
                try:
                    shard.minted.append(shard.mint())
                except (MapStale, NotMember, RuntimeError):  # RuntimeError: the old rule found no id
                    shard.refused += 1
    return cluster, shards


def wrong_owners(cluster: Cluster, shards: list[SimShard]) -> list[tuple[int, int, int]]:
    final = cluster.shard_map
    return [(s.index, i, final.owner(i)) for s in shards for i in s.minted if final.owner(i) != s.index]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=1, max_size=80))
def test_guarded_minting_never_mints_an_id_owned_by_another_shard(steps):
    cluster, shards = run_world(steps, guarded=True)
    crossed = [i for s in shards for i in s.minted for e in cluster.shard_map.epochs[1:]
               if timestamp_ms(i) >= e.effective_from_ms]
    event("ids minted under a later epoch" if crossed else "no id past an epoch")
    assert wrong_owners(cluster, shards) == []
    minted = [i for s in shards for i in s.minted]
    assert len(minted) == len(set(minted))


def test_unguarded_rule_mints_ids_the_final_map_gives_to_another_shard():
    # Shard 0 read the map at the start and never again; the fleet grew to 3 meanwhile.
    idle = [(None, 0)] * (SHARDS - 1)
    steps = [(1, 3, [(None, 0)] + idle), (GRACE_MS + 100, None, [(None, 40)] + idle)]
    cluster, shards = run_world(steps, guarded=False)
    assert wrong_owners(cluster, shards), "the stale unguarded minter should have minted foreign ids"
    # The guarded minter refuses instead of guessing.
    cluster, shards = run_world(steps, guarded=True)
    assert wrong_owners(cluster, shards) == [] and shards[0].refused == 40 and not shards[0].minted


def test_the_same_property_search_finds_a_counterexample_for_the_unguarded_rule():
    found = find(st.lists(step, min_size=1, max_size=80),
                 lambda steps: bool(wrong_owners(*run_world(steps, guarded=False))),
                 settings=settings(max_examples=2_000, deadline=None, database=None, phases=[Phase.generate],
                                   derandomize=True))  # the same examples each run: a chance miss failed CI once
    assert any(commit is not None for _, commit, _ in found)


def test_a_delayed_read_is_enough_when_it_is_recent():
    idle = [(None, 0)] * (SHARDS - 1)
    steps = [(1, 3, [(None, 0)] + idle), (200, None, [(50, 0)] + idle), (GRACE_MS - 100, None, [(None, 40)] + idle)]
    cluster, shards = run_world(steps, guarded=True)
    assert len(shards[0].minted) == 40 and wrong_owners(cluster, shards) == []
    assert any(timestamp_ms(i) >= cluster.shard_map.newest().effective_from_ms for i in shards[0].minted)


def test_a_draining_shard_keeps_minting_owned_ids_after_its_epoch():
    clock = Clock()
    cluster = Cluster(clock)
    cluster.commit(3)
    clock.now += GRACE_MS + 1
    shards = make_shards(cluster, clock, 3, guarded=True)
    shards[2].mint()  # it runs executions
    cluster.commit(2)  # drain shard 2
    shards[2].view.confirm(cluster.read())
    drain_at = cluster.shard_map.newest().effective_from_ms
    clock.now = drain_at + 60_000  # long after the drain took effect: its executions still emit events
    for _ in range(5):
        shards[2].view.confirm(cluster.read())
        ids = [shards[2].mint() for _ in range(200)]
        clock.now += 10_000
        assert all(cluster.shard_map.owner(i) == 2 and timestamp_ms(i) < drain_at for i in ids)
        assert ids == sorted(ids)


def test_a_shard_not_yet_in_the_map_refuses_to_mint():
    clock = Clock()
    cluster = Cluster(clock)
    cluster.commit(3)
    shard = make_shards(cluster, clock, 3, guarded=True)[2]
    with pytest.raises(NotMember):
        shard.mint()
    clock.now += GRACE_MS
    shard.view.confirm(cluster.read())
    assert cluster.shard_map.owner(shard.mint()) == 2


def test_clock_skew_allowance_shrinks_the_horizon():
    clock = Clock()
    view = ConfirmedView(ConfirmedMap(ShardMap.single(2), clock.now))
    minter = GuardedMinter(Snowflake(0, clock=clock), 0, view, GRACE_MS, skew_ms=200)
    clock.now += GRACE_MS - 201
    minter()
    clock.now += 1
    with pytest.raises(MapStale):
        minter()


def test_confirm_never_moves_back():
    old = ConfirmedMap(ShardMap.single(2), 100)
    view = ConfirmedView(ConfirmedMap(ShardMap.single(2), 200))
    assert not view.confirm(old) and view.confirmed.confirmed_at_ms == 200
