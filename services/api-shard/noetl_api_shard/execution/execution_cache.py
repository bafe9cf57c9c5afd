"""Executions ready for the engine: the locked row's compact state plus the execution's results
and loop data, kept in memory between transactions so a step does not re-read its history.

The cache is only a shortcut: an entry is used only when its version equals the row's
`state_version` (bumped by every state write), and it is taken out while a transaction works on
it and put back only after that transaction commits. A rolled-back transaction therefore leaves
no trace, and another writer (a second process on the same database) only costs a reload.

Two transactions of this process on one execution (outcomes of a parallel loop) meet at the row
lock: the second gets it the moment the first commits, possibly before the first has put the data
back. So a transaction holding an execution is recorded (`hold`), and a miss while another holds
it waits for that one to finish (`wait`) instead of reloading the loop from the database.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

from noetl_common.engine import ExecutionData, State

DEFAULT_CAPACITY = 10_000


class Loaded:
    """A locked execution, as the engine sees it, for the length of one transaction."""

    __slots__ = ("execution_id", "catalog_id", "status", "path", "parent_execution_id", "parent_command_id",
                 "state", "data", "version", "changed", "held")

    def __init__(self, *, execution_id: int, catalog_id: int, status: str, path: str,
                 parent_execution_id: int | None, parent_command_id: int | None, state: State,
                 data: ExecutionData, version: int) -> None:
        self.execution_id = execution_id
        self.catalog_id = catalog_id
        self.status = status
        self.path = path
        self.parent_execution_id = parent_execution_id
        self.parent_command_id = parent_command_id
        self.state = state
        self.data = data
        self.version = version
        self.changed = False  # state or data advanced in this transaction: written once at the end
        self.held: asyncio.Event | None = None  # this transaction's hold on the cache entry

    @classmethod
    def from_row(cls, row: Any, state: State, data: ExecutionData) -> "Loaded":
        return cls(execution_id=row["execution_id"], catalog_id=row["catalog_id"], status=row["status"],
                   path=row["path"], parent_execution_id=row["parent_execution_id"],
                   parent_command_id=row["parent_command_id"], state=state, data=data,
                   version=row["state_version"])


class ExecutionCache:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[int, tuple[int, ExecutionData]] = OrderedDict()
        self._held: dict[int, asyncio.Event] = {}

    def take(self, execution_id: int, version: int) -> ExecutionData | None:
        entry = self._entries.pop(execution_id, None)
        if entry is None or entry[0] != version:
            return None
        return entry[1]

    def put(self, execution_id: int, version: int, data: ExecutionData) -> None:
        self._entries[execution_id] = (version, data)
        self._entries.move_to_end(execution_id)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    async def take_or_wait(self, execution_id: int, version: int) -> ExecutionData | None:
        data = self.take(execution_id, version)
        held = self._held.get(execution_id)
        if data is None and held is not None:
            await held.wait()  # its holder has committed (we have the row lock): the data comes back now
            data = self.take(execution_id, version)
        return data

    def hold(self, execution_id: int) -> asyncio.Event:
        held = self._held[execution_id] = asyncio.Event()
        return held

    def release(self, execution_id: int, held: asyncio.Event) -> None:
        if self._held.get(execution_id) is held:
            del self._held[execution_id]
        held.set()

    def drop(self, execution_id: int) -> None:
        self._entries.pop(execution_id, None)

    def __len__(self) -> int:
        return len(self._entries)

