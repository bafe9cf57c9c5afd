"""The pieces a shard transaction is made of: the transaction itself (`Txn`), what the engine's
decisions produce along the way, and the two ways an optimistic one gives up."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import msgspec

from ...store.writes import CommandRow
from .execution_cache import Loaded
from .unit_of_work import UnitOfWork


class Outcome(msgspec.Struct):
    commands: int = 0
    finished: str | None = None


class FollowUp(msgspec.Struct):
    """An engine event for an execution, applied after the current apply (never nested in it)."""

    execution_id: int
    event: Any
    cause_event_id: int


class Eager(msgspec.Struct, kw_only=True):
    """A worker reporting an outcome offers to take up to `slots` next commands of its pool now:
    they are claimed and started for it in the same transaction and returned in the answer,
    instead of being announced on NATS."""

    worker_id: str
    pool: str
    slots: int
    lease_seconds: float
    claimed: list[CommandRow] = []


class NeedsLock(Exception):
    """Optimistic work reached an execution it has not loaded (a parent on this shard)."""


class Fallback(Exception):
    """An optimistic transaction could not be used; it wrote nothing. Redo under `transaction()`."""


class Txn:
    """One transaction: its connection (none for an optimistic one until it writes), its writes,
    the executions it has loaded and those it holds in the cache, and when it began (monotonic)."""

    def __init__(self, conn: asyncpg.Connection | None, uow: UnitOfWork, *, optimistic: bool = False) -> None:
        self.began = time.monotonic()
        self.conn = conn
        self.uow = uow
        self.optimistic = optimistic
        self.loaded: dict[int, Loaded] = {}
        self.held: set[int] = set()
        self.queue: list[FollowUp] = []


class StatementCount:
    """Counts what a locking transaction sends to Postgres (BEGIN and COMMIT included) through
    asyncpg's query logger, for its span's `db.statement_count`. Attached only when the
    transaction has a span (a traced request): otherwise construction and close do nothing."""

    __slots__ = ("conn", "span", "count")

    def __init__(self, conn: asyncpg.Connection, span: Any) -> None:
        self.conn, self.span, self.count = conn, span, 0
        if span is not None:
            conn.add_query_logger(self)

    def __call__(self, _query: Any) -> None:
        self.count += 1

    def close(self, events: int) -> None:
        """Detach (the connection goes back to the pool) and record the count."""
        if self.span is not None:
            self.conn.remove_query_logger(self)
            self.span.set_attribute("db.statement_count", self.count)
            self.span.set_attribute("noetl.events", events)
