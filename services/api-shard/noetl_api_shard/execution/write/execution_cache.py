"""Executions ready for the engine, kept in memory between transactions: the decoded state, the
results and loop data, and the row's facts, so a step neither re-reads nor re-decodes its history.

The cache is a shortcut, never the truth: a locking transaction uses an entry only when its
version equals the locked row's `state_version` (bumped by every state write), and an optimistic
one writes only if the row is still at the entry's version. An entry is taken out while a
transaction works on it and put back only after that transaction commits, so a rollback leaves no
trace and another writer (a second process on the same database) only costs a reload.

Holding an execution also serialises this process's transactions on it. An optimistic
transaction waits for any holder (`acquire`). A locking transaction already holds the row lock
when it asks (`take`); it waits only for a locking holder (which has committed by then: it held the
row lock before us), never for an optimistic one, whose statement may be waiting for our row lock.
"""

import asyncio
from collections import OrderedDict
from typing import Any

from noetl_common.engine import ExecutionData, State

DEFAULT_CAPACITY = 10_000


class Loaded:
    """A locked execution, as the engine sees it, for the length of one transaction."""

    __slots__ = ("execution_id", "catalog_id", "status", "path", "parent_execution_id", "parent_command_id",
                 "execution_pool", "state", "data", "version", "changed")

    def __init__(self, *, execution_id: int, catalog_id: int, status: str, path: str,
                 parent_execution_id: int | None, parent_command_id: int | None, state: State,
                 data: ExecutionData, version: int, execution_pool: str | None = None) -> None:
        self.execution_id = execution_id
        self.catalog_id = catalog_id
        self.status = status
        self.path = path
        self.parent_execution_id = parent_execution_id
        self.parent_command_id = parent_command_id
        self.execution_pool = execution_pool  # the pool the execute request named, if any
        self.state = state
        self.data = data
        self.version = version
        self.changed = False  # state or data advanced in this transaction: written once at the end

    @classmethod
    def from_row(cls, row: Any, state: State, data: ExecutionData) -> "Loaded":
        return cls(execution_id=row["execution_id"], catalog_id=row["catalog_id"], status=row["status"],
                   path=row["path"], parent_execution_id=row["parent_execution_id"],
                   parent_command_id=row["parent_command_id"], state=state, data=data,
                   version=row["state_version"], execution_pool=row["execution_pool"])


class _Hold:
    __slots__ = ("done", "optimistic")

    def __init__(self, optimistic: bool) -> None:
        self.done = asyncio.Event()
        self.optimistic = optimistic


class ExecutionCache:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[int, Loaded] = OrderedDict()
        self._held: dict[int, _Hold] = {}

    async def acquire(self, execution_id: int) -> Loaded | None:
        """For an optimistic transaction: wait for any holder, then hold the execution and take its
        entry (None: not cached)."""
        while (hold := self._held.get(execution_id)) is not None:
            await hold.done.wait()
        self._held[execution_id] = _Hold(optimistic=True)
        return self._entries.pop(execution_id, None)

    async def take(self, execution_id: int, version: int) -> tuple[Loaded | None, bool]:
        """For a locking transaction holding the row lock: (the entry at `version` or None, whether
        the execution is now held by the caller)."""
        hold = self._held.get(execution_id)
        if hold is not None and not hold.optimistic:
            await hold.done.wait()
            hold = self._held.get(execution_id)
        if hold is not None:  # an optimistic holder: read the row instead (its write will not pass)
            return None, False
        self._held[execution_id] = _Hold(optimistic=False)
        entry = self._entries.pop(execution_id, None)
        return (entry if entry is not None and entry.version == version else None), True

    def hold_new(self, execution_id: int) -> None:
        self._held[execution_id] = _Hold(optimistic=False)

    def release(self, execution_id: int, keep: Loaded | None) -> None:
        """End this transaction's hold, putting `keep` back (after a commit)."""
        if keep is not None:
            self._entries[execution_id] = keep
            self._entries.move_to_end(execution_id)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        hold = self._held.pop(execution_id, None)
        if hold is not None:
            hold.done.set()

    def __len__(self) -> int:
        return len(self._entries)
