"""The shard's cache of cluster rows (store.cluster_cache): what it keeps, for how long, and what
a change notification, a lost listener or a read racing a change does to it."""

from __future__ import annotations

import asyncio

from noetl_api_shard.store import catalog as catalog_store
from noetl_api_shard.store import credentials as credential_store
from noetl_api_shard.store.cluster_cache import ClusterCache


class Count:
    def __init__(self) -> None:
        self.n = 0

    def inc(self) -> None:
        self.n += 1


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeDb:
    """Stands in for the store functions' database reads: answers from `rows`, counting reads."""

    def __init__(self, monkeypatch) -> None:
        self.rows: dict[object, dict] = {}
        self.reads = 0
        self.during_read = None  # called while a read is in flight (a change racing it)
        monkeypatch.setattr(catalog_store, "get_by_path", self.catalog)
        monkeypatch.setattr(credential_store, "get", self.credential)

    async def _answer(self, key):
        self.reads += 1
        row = self.rows.get(key)
        if self.during_read is not None:
            self.during_read()
        await asyncio.sleep(0)
        return row

    async def catalog(self, _pool, path, version):
        return await self._answer(("catalog", path, version))

    async def credential(self, _pool, *, id_=None, name=None):
        return await self._answer(("credential", id_, name))


def cache(clock=None, max_age=10.0, listening=True) -> tuple[ClusterCache, Count, Count]:
    hits, misses = Count(), Count()
    c = ClusterCache(max_age, hits=hits, misses=misses, clock=clock or Clock())
    c.resync(listening)
    return c, hits, misses


async def test_a_latest_entry_is_kept_until_a_change_to_its_path_is_announced(monkeypatch):
    db = FakeDb(monkeypatch)
    db.rows[("catalog", "a/b", None)] = {"catalog_id": 1, "content": "v1"}
    c, hits, misses = cache()
    assert (await c.catalog_by_path(None, "a/b", None))["catalog_id"] == 1
    db.rows[("catalog", "a/b", None)] = {"catalog_id": 2, "content": "v2"}
    assert (await c.catalog_by_path(None, "a/b", None))["catalog_id"] == 1  # served from the cache
    assert (db.reads, hits.n, misses.n) == (1, 1, 1)
    c.on_change("catalog:other/path")
    assert (await c.catalog_by_path(None, "a/b", None))["catalog_id"] == 1  # another path: kept
    c.on_change("catalog:a/b")
    assert (await c.catalog_by_path(None, "a/b", None))["catalog_id"] == 2
    assert db.reads == 2


async def test_a_latest_entry_expires_after_max_age(monkeypatch):
    db = FakeDb(monkeypatch)
    db.rows[("catalog", "p", None)] = {"catalog_id": 1, "content": ""}
    clock = Clock()
    c, _, _ = cache(clock, max_age=5.0)
    await c.catalog_by_path(None, "p", None)
    clock.now += 4.9
    await c.catalog_by_path(None, "p", None)
    assert db.reads == 1
    clock.now += 0.2
    await c.catalog_by_path(None, "p", None)
    assert db.reads == 2


async def test_without_a_listener_changeable_rows_are_always_read(monkeypatch):
    db = FakeDb(monkeypatch)
    db.rows[("catalog", "p", None)] = {"catalog_id": 1, "content": ""}
    db.rows[("credential", None, "pg")] = {"name": "pg"}
    c, _, _ = cache(listening=False)
    for _ in range(3):
        await c.catalog_by_path(None, "p", None)
        await c.credential(None, name="pg")
    assert db.reads == 6
    c.resync(True)
    for _ in range(3):
        await c.catalog_by_path(None, "p", None)
    assert db.reads == 7
    c.resync(False)  # the connection is lost: what was cached is dropped and not used
    await c.catalog_by_path(None, "p", None)
    assert db.reads == 8


async def test_max_age_zero_turns_changeable_caching_off(monkeypatch):
    db = FakeDb(monkeypatch)
    db.rows[("catalog", "p", None)] = {"catalog_id": 1, "content": ""}
    c, _, _ = cache(max_age=0.0)
    await c.catalog_by_path(None, "p", None)
    await c.catalog_by_path(None, "p", None)
    assert db.reads == 2


async def test_a_named_version_never_changes_and_is_kept_even_without_a_listener(monkeypatch):
    db = FakeDb(monkeypatch)
    db.rows[("catalog", "p", 3)] = {"catalog_id": 3, "content": ""}
    clock = Clock()
    c, _, _ = cache(clock, listening=False)
    await c.catalog_by_path(None, "p", 3)
    clock.now += 3600
    c.on_change("catalog:p")
    assert (await c.catalog_by_path(None, "p", 3))["catalog_id"] == 3
    assert db.reads == 1


async def test_a_change_during_a_read_keeps_that_read_out_of_the_cache(monkeypatch):
    db = FakeDb(monkeypatch)
    db.rows[("catalog", "p", None)] = {"catalog_id": 1, "content": ""}
    c, _, _ = cache()
    db.during_read = lambda: c.on_change("catalog:p")  # the register commits while the old row is read
    await c.catalog_by_path(None, "p", None)
    db.during_read = None
    await c.catalog_by_path(None, "p", None)
    assert db.reads == 2


async def test_credentials_by_name_and_id_are_dropped_by_any_credential_change(monkeypatch):
    db = FakeDb(monkeypatch)
    db.rows[("credential", None, "pg")] = {"name": "pg", "content": None}
    db.rows[("credential", 7, None)] = {"name": "pg", "content": None}
    c, _, _ = cache()
    for _ in range(2):
        await c.credential(None, name="pg")
        await c.credential(None, id_=7)
    assert db.reads == 2
    c.on_change("credential:pg")
    await c.credential(None, name="pg")
    await c.credential(None, id_=7)
    assert db.reads == 4


async def test_missing_rows_and_big_ones_are_not_kept(monkeypatch):
    db = FakeDb(monkeypatch)
    db.rows[("catalog", "big", None)] = {"catalog_id": 1, "content": "x" * (2 << 20)}
    c, _, _ = cache()
    for _ in range(2):
        assert await c.catalog_by_path(None, "absent", None) is None
        await c.catalog_by_path(None, "big", None)
    assert db.reads == 4


async def test_entries_are_bounded_least_recently_used_first_out(monkeypatch):
    db = FakeDb(monkeypatch)
    for i in range(3):
        db.rows[("catalog", f"p{i}", 1)] = {"catalog_id": i, "content": ""}
    hits, misses = Count(), Count()
    c = ClusterCache(10.0, hits=hits, misses=misses, size=2)
    await c.catalog_by_path(None, "p0", 1)
    await c.catalog_by_path(None, "p1", 1)
    await c.catalog_by_path(None, "p0", 1)  # p0 used again: p1 is now the oldest
    await c.catalog_by_path(None, "p2", 1)
    assert db.reads == 3
    await c.catalog_by_path(None, "p0", 1)
    assert db.reads == 3
    await c.catalog_by_path(None, "p1", 1)
    assert db.reads == 4


async def test_a_change_made_here_drops_the_entry_and_waits_to_hear_its_notification(monkeypatch):
    db = FakeDb(monkeypatch)
    db.rows[("catalog", "p", None)] = {"catalog_id": 1, "content": ""}
    c, _, _ = cache()
    await c.catalog_by_path(None, "p", None)
    db.rows[("catalog", "p", None)] = {"catalog_id": 2, "content": ""}
    done = asyncio.Event()

    async def register():
        async with c.changing("catalog:p"):
            pass  # the committing transaction
        done.set()

    task = asyncio.ensure_future(register())
    await asyncio.sleep(0.05)
    assert not done.is_set()  # still waiting for its own notification
    assert (await c.catalog_by_path(None, "p", None))["catalog_id"] == 2  # but dropped here already
    c.on_change("catalog:p")
    await asyncio.wait_for(task, 1)
    assert c._waiting == {}


async def test_a_failed_change_leaves_no_waiter_and_an_unheard_one_gives_up(monkeypatch):
    monkeypatch.setattr("noetl_api_shard.store.cluster_cache.HEARD_WITHIN", 0.05)
    c, _, _ = cache()
    try:
        async with c.changing("catalog:p"):
            raise RuntimeError("the transaction failed")
    except RuntimeError:
        pass
    assert c._waiting == {}
    async with c.changing("catalog:p"):
        pass  # nobody notifies: given up after HEARD_WITHIN
    assert c._waiting == {}
    c.resync(False)
    started = asyncio.get_running_loop().time()
    async with c.changing("catalog:p"):
        pass  # not listening: nothing to wait for
    assert asyncio.get_running_loop().time() - started < 0.04
