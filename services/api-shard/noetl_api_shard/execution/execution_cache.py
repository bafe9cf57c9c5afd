"""Executions ready for the engine: the locked row's compact state plus the execution's results
and loop data, kept in memory between transactions so a step does not re-read its history.

The cache is only a shortcut: an entry is used only when its version equals the row's
`state_version` (bumped by every state write), and it is taken out while a transaction works on
it and put back only after that transaction commits. A rolled-back transaction therefore leaves
no trace, and another writer (a second process on the same database) only costs a reload.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from noetl_common.engine import ExecutionData, State

DEFAULT_CAPACITY = 10_000


class Loaded:
    """A locked execution, as the engine sees it, for the length of one transaction."""

    __slots__ = ("execution_id", "catalog_id", "status", "path", "parent_execution_id", "parent_command_id",
                 "state", "data", "version", "changed")

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

    def drop(self, execution_id: int) -> None:
        self._entries.pop(execution_id, None)

    def __len__(self) -> int:
        return len(self._entries)

