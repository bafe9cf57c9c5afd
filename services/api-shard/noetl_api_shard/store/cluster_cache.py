"""Cluster-database rows a shard reads on its hot paths, cached with bounded staleness: the catalog
entry an execute names by path (every start reads one) and credentials (every tool that uses one).

Every shard shares the cluster database, so these reads are fleet-wide work that grows with the
shard count. A catalog entry named by path and version never changes, so it is kept until evicted.
The latest version of a path, and a credential, can change (register, archive, restore; upsert,
delete): the transaction that changes one also NOTIFYs (store.cluster_notify), and each shard's
listener (cluster_listener) drops what it names: a register on one shard reaches another's cache
within a notification's delivery, well under the time a client takes to send its next request.
Such an entry is used only while the listener is connected, and for at most `max_age` seconds,
which bounds what a lost notification can cost; losing or regaining the connection drops them all
(nothing heard meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from typing import AsyncIterator, Awaitable, Callable, Protocol

import asyncpg

from . import catalog as catalog_store
from . import credentials as credential_store

MAX_ENTRIES = 1024  # per kind of entry; least recently used first out
MAX_ENTRY_BYTES = 1 << 20  # a catalog entry's text larger than this is read each time
HEARD_WITHIN = 0.5  # seconds a change waits to hear its own notification (see changing)
# Then this much more: between the listeners of one server, delivery of the same notification was
# measured up to 1 ms apart here; a loaded machine can stretch that.
SETTLE = 0.02

Fetch = Callable[[], Awaitable[asyncpg.Record | None]]


class Counted(Protocol):
    def inc(self) -> None: ...


class _Lru:
    def __init__(self, size: int) -> None:
        self.size = size
        self.rows: OrderedDict[object, tuple[float, asyncpg.Record]] = OrderedDict()

    def get(self, key: object) -> tuple[float, asyncpg.Record] | None:
        found = self.rows.get(key)
        if found is not None:
            self.rows.move_to_end(key)
        return found

    def put(self, key: object, fetched_at: float, row: asyncpg.Record) -> None:
        self.rows[key] = (fetched_at, row)
        self.rows.move_to_end(key)
        while len(self.rows) > self.size:
            self.rows.popitem(last=False)


class ClusterCache:
    """`max_age` 0 turns caching of changeable entries off (fixed ones are still kept); `hits`
    and `misses` count reads (metrics)."""

    def __init__(self, max_age: float, *, hits: Counted, misses: Counted, size: int = MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self._hit, self._miss = hits, misses
        self.listening = False  # see resync
        self._clock = clock
        self._fixed = _Lru(size)  # (path, version) -> catalog row: never changes
        self._latest = _Lru(size)  # path -> its newest catalog row
        self._credentials = _Lru(size)  # ("id", id) | ("name", name) -> credential row
        # Bumped by every drop: a read that began before one may have read what it dropped, so
        # its row is not kept.
        self._generation = 0
        self._waiting: dict[str, list[asyncio.Future[None]]] = {}

    # --- reads ----------------------------------------------------------------------------------
    async def catalog_by_path(self, pool: asyncpg.Pool, path: str, version: int | None) -> asyncpg.Record | None:
        if version is not None:
            return await self._read(self._fixed, (path, version), False,
                                    lambda: catalog_store.get_by_path(pool, path, version))
        return await self._read(self._latest, path, True, lambda: catalog_store.get_by_path(pool, path, None))

    async def credential(self, pool: asyncpg.Pool, *, id_: int | None = None,
                         name: str | None = None) -> asyncpg.Record | None:
        key = ("id", id_) if id_ is not None else ("name", name)
        return await self._read(self._credentials, key, True,
                                lambda: credential_store.get(pool, id_=id_, name=name))

    async def _read(self, lru: _Lru, key: object, changeable: bool, fetch: Fetch) -> asyncpg.Record | None:
        now = self._clock()
        usable = not changeable or (self.listening and self.max_age > 0)
        if usable:
            found = lru.get(key)
            if found is not None and (not changeable or now - found[0] < self.max_age):
                self._hit.inc()
                return found[1]
        self._miss.inc()
        generation = self._generation
        row = await fetch()
        if row is not None and usable and generation == self._generation and _small(row):
            lru.put(key, now, row)
        return row

    # --- changes --------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def changing(self, payload: str) -> AsyncIterator[None]:
        """Around a change this shard makes (its transaction announces `payload`): once it has
        committed, this shard's entry is dropped at once, and the change waits (at most
        HEARD_WITHIN) until this shard's listener hears the notification, then SETTLE more. Every
        listener is sent it at the same commit, so by then the other shards have heard it too, and
        a client that sends its next request after the answer finds no shard serving the old row.
        Changes are rare (a register, a credential update): the wait costs nothing that matters."""
        heard: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(payload, []).append(heard)
        try:
            yield
            self._drop(payload)
            if self.listening:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(heard), HEARD_WITHIN)
                await asyncio.sleep(SETTLE)
        finally:
            waiters = self._waiting.get(payload, [])
            if heard in waiters:
                waiters.remove(heard)
            if not waiters:
                self._waiting.pop(payload, None)

    def on_change(self, payload: str) -> None:
        """A notification: "catalog:<path>" (an empty path: every path) or "credential:". Credentials
        are dropped all at once: one can be read by id or by name, and they change rarely."""
        for heard in self._waiting.pop(payload, ()):
            if not heard.done():
                heard.set_result(None)
        self._drop(payload)

    def _drop(self, payload: str) -> None:
        kind, _, key = payload.partition(":")
        self._generation += 1
        if kind == "catalog" and key:
            self._latest.rows.pop(key, None)
        elif kind == "catalog":
            self._latest.rows.clear()
        elif kind == "credential":
            self._credentials.rows.clear()
        else:
            self.forget_changeable()

    def resync(self, listening: bool) -> None:
        """The listener connected (changes made meanwhile were not heard) or lost its connection:
        either way nothing changeable that is cached can be trusted."""
        self.listening = listening
        self.forget_changeable()

    def forget_changeable(self) -> None:
        self._generation += 1
        self._latest.rows.clear()
        self._credentials.rows.clear()


def _small(row: asyncpg.Record) -> bool:
    content = row.get("content")  # a credential has none
    return content is None or len(content) <= MAX_ENTRY_BYTES
