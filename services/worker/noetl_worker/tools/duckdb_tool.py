"""`kind: duckdb`: embedded, in-memory unless `db_path` is given; same result shape as postgres."""

from __future__ import annotations

import asyncio
from typing import Any

from .base import ToolContext, ToolError, jsonable, split_statements, sql_text


def _run_sync(sql: str, db_path: str) -> dict[str, Any]:
    import duckdb

    statements = split_statements(sql)
    try:
        con = duckdb.connect(db_path)
    except Exception as exc:
        raise ToolError(f"could not open duckdb database {db_path!r}: {exc}") from None
    try:
        for stmt in statements[:-1]:
            con.execute(stmt)
        cur = con.execute(statements[-1]) if statements else None
        if cur is None or cur.description is None:
            return {"status": "success", "affected_rows": 0}
        columns = [d[0] for d in cur.description]
        rows = [dict(zip(columns, (jsonable(v) for v in row))) for row in cur.fetchall()]
        return {"status": "success", "columns": columns, "rows": rows, "row_count": len(rows)}
    except ToolError:
        raise
    except Exception as exc:
        raise ToolError(f"DuckDB error: {type(exc).__name__}: {exc}") from None
    finally:
        con.close()


async def run(config: dict[str, Any], inputs: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    db_path = config.get("db_path") or ":memory:"
    return await asyncio.wait_for(asyncio.to_thread(_run_sync, sql_text(config), db_path), ctx.timeout_seconds)
