"""`kind: duckdb`: embedded; same result shape as postgres. The database is `database` (or
`db_path`; `:memory:` for a fresh one), by default one file per execution, as NoETL's worker keeps
it (`$NOETL_DATA_DIR/noetldb/duckdb_<execution_id>.duckdb`, NOETL_DATA_DIR defaulting to the
system's temporary directory), so a table one step creates is there for the next. `auth` secrets
and the shipped extensions are set up first (duckdb_setup.py). Runs on a thread; on timeout the
query is interrupted so the thread does not keep working after the step has failed."""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from . import duckdb_setup
from .base import ToolContext, ToolError, jsonable, split_statements, sql_text
from .scripts import script_text


class _Query:
    def __init__(self, statements: list[str], params: list[Any], db_path: str, setup: list[str] | None = None,
                 hidden: list[str] | None = None) -> None:
        self.statements, self.params, self.db_path = statements, params, db_path
        self.setup, self.hidden = setup or [], hidden or []  # CREATE SECRETs, and the values to scrub
        self._con: Any = None
        self._lock = threading.Lock()

    def run(self) -> dict[str, Any]:
        import duckdb

        con = _connect(duckdb, self.db_path)
        with self._lock:
            self._con = con
        try:
            duckdb_setup.install_bundled(con)
            for stmt in self.setup + self.statements[:-1]:
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
            message = f"DuckDB error: {type(exc).__name__}: {exc}"
            for value in self.hidden:
                message = message.replace(value, "***")
            raise ToolError(message) from None
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


# A database file is one process's at a time: another worker's step on the same file (a parallel loop
# over one execution's database) holds its lock for the length of its statements, so waiting this long
# for it is the step's answer, not an error.
LOCK_WAIT_SECONDS = 30.0
# What DuckDB answers while the file is busy: another process holds its lock, or another thread of
# this one is opening it at the same moment (two instances racing for one file; the loser's retry
# finds the winner's instance in DuckDB's cache).
BUSY = ("Could not set lock", "Unique file handle conflict")


def _connect(duckdb: Any, path: str) -> Any:
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    pause = 0.02
    while True:
        try:
            return duckdb.connect(path)
        except Exception as exc:
            if not any(b in str(exc) for b in BUSY) or time.monotonic() > deadline:
                raise ToolError(f"could not open duckdb database {path!r}: {exc}") from None
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


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
    setup, hidden = await duckdb_setup.secret_statements(config.get("auth"), ctx)
    query = _Query(statements, list(params), database_path(config, ctx), setup, hidden)
    task = asyncio.ensure_future(asyncio.to_thread(query.run))
    try:
        return await asyncio.wait_for(asyncio.shield(task), ctx.timeout_seconds)
    except (asyncio.TimeoutError, asyncio.CancelledError):
        query.interrupt()
        raise


def database_path(config: dict[str, Any], ctx: ToolContext) -> str:
    named = config.get("database") or config.get("db_path")
    if named:
        return str(named)
    directory = Path(os.environ.get("NOETL_DATA_DIR") or tempfile.gettempdir()) / "noetldb"
    directory.mkdir(parents=True, exist_ok=True)
    return str(directory / f"duckdb_{ctx.execution_id}.duckdb")
