"""`kind: duckdb`: embedded, in-memory unless `db_path` is given (the fixtures' `database:
':memory:'` means the same); same result shape as postgres. Runs on a thread; on timeout the
query is interrupted so the thread does not keep working after the step has failed."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from .base import ToolContext, ToolError, jsonable, split_statements, sql_text
from .scripts import script_text


class _Query:
    def __init__(self, statements: list[str], params: list[Any], db_path: str) -> None:
        self.statements, self.params, self.db_path = statements, params, db_path
        self._con: Any = None
        self._lock = threading.Lock()

    def run(self) -> dict[str, Any]:
        import duckdb

        try:
            con = duckdb.connect(self.db_path)
        except Exception as exc:
            raise ToolError(f"could not open duckdb database {self.db_path!r}: {exc}") from None
        with self._lock:
            self._con = con
        try:
            for stmt in self.statements[:-1]:
                con.execute(stmt)
            cur = con.execute(self.statements[-1], self.params or None)
            if cur.description is None:
                return {"status": "success", "affected_rows": 0}
            columns = [d[0] for d in cur.description]
            rows = cur.fetchall()
            if columns == ["Count"] and len(rows) <= 1 and not _is_query(self.statements[-1]):
                return {"status": "success", "affected_rows": int(rows[0][0]) if rows else 0}
            out = [dict(zip(columns, (jsonable(v) for v in row))) for row in rows]
            return {"status": "success", "columns": columns, "rows": out, "row_count": len(out)}
        except Exception as exc:
            raise ToolError(f"DuckDB error: {type(exc).__name__}: {exc}") from None
        finally:
            with self._lock:
                self._con = None
            con.close()

    def interrupt(self) -> None:
        with self._lock:
            if self._con is not None:
                try:
                    self._con.interrupt()
                except Exception:
                    pass


QUERY_WORDS = frozenset({"SELECT", "WITH", "FROM", "VALUES", "TABLE", "SHOW", "DESCRIBE", "PRAGMA", "EXPLAIN",
                         "SUMMARIZE", "CALL", "(", "PIVOT", "UNPIVOT"})


def _is_query(stmt: str) -> bool:
    """DuckDB answers DML and DDL with a `Count` table (one row, or none); a query named so is rare."""
    words = stmt.lstrip("( \n\t").split(None, 1)
    return not words or words[0].upper() in QUERY_WORDS


async def run(config: dict[str, Any], inputs: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    text = await script_text("duckdb", config["script"], ctx) if config.get("script") and not config.get("command") \
        else sql_text(config)
    statements = split_statements(text)
    if not statements:
        raise ToolError("duckdb `command` has no SQL statement (only comments or whitespace)")
    params = config.get("params") or []
    if not isinstance(params, (list, tuple)):
        raise ToolError("duckdb `params` must be a list (positional ?)")
    query = _Query(statements, list(params), str(config.get("db_path") or ":memory:"))
    task = asyncio.ensure_future(asyncio.to_thread(query.run))
    try:
        return await asyncio.wait_for(asyncio.shield(task), ctx.timeout_seconds)
    except (asyncio.TimeoutError, asyncio.CancelledError):
        query.interrupt()
        raise
