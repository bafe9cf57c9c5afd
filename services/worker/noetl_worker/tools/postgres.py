"""`kind: postgres`: connection from an `auth`/`credential` name resolved through the control plane
(data: db_host, db_port, db_user, db_password, db_name) or inline fields. The last statement's
rows are the result: `{columns, rows, row_count}`, or `{affected_rows}` when it returns none."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from .base import ToolContext, ToolError, jsonable, split_statements, sql_text


async def _connection_args(config: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    auth = config.get("auth") or config.get("credential")
    if isinstance(auth, dict) and ("db_host" in auth or "host" in auth):
        data = auth
    elif isinstance(auth, dict) and auth.get("key"):
        data = (await ctx.credentials.get_credential(str(auth["key"]))).get("data") or {}
    elif isinstance(auth, str) and auth:
        data = (await ctx.credentials.get_credential(auth)).get("data") or {}
    elif config.get("connection_string"):
        return {"dsn": config["connection_string"]}
    else:
        data = config
    host = data.get("db_host") or data.get("host")
    if not host:
        raise ToolError("postgres tool needs `auth` naming a credential (or connection fields)")
    return {"host": host, "port": int(data.get("db_port") or data.get("port") or 5432),
            "user": data.get("db_user") or data.get("user"), "password": data.get("db_password") or data.get("password"),
            "database": data.get("db_name") or data.get("database")}


async def run(config: dict[str, Any], inputs: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    statements = split_statements(sql_text(config))
    try:
        args = await _connection_args(config, ctx)
    except ToolError:
        raise
    except Exception as exc:
        raise ToolError(f"could not resolve postgres credentials: {exc}") from None
    try:
        conn = await asyncio.wait_for(asyncpg.connect(**args), 15)
    except Exception as exc:  # message never includes the password: asyncpg does not echo it
        raise ToolError(f"could not connect to postgres at {args.get('host')}:{args.get('port')}: "
                        f"{type(exc).__name__}: {exc}") from None
    try:
        if config.get("schema"):
            await conn.execute(f'SET search_path TO "{config["schema"]}", public')
        async with conn.transaction():
            for stmt in statements[:-1]:
                await conn.execute(stmt)
            last = statements[-1] if statements else "SELECT 1 WHERE false"
            prepared = await conn.prepare(last)
            if prepared.get_attributes():
                records = await prepared.fetch(*config.get("params", []) or [])
                columns = [a.name for a in prepared.get_attributes()]
                rows = [{c: jsonable(r[c]) for c in columns} for r in records]
                return {"status": "success", "columns": columns, "rows": rows, "row_count": len(rows)}
            status = await conn.execute(last)
            tail = status.split()[-1] if status else "0"
            return {"status": "success", "affected_rows": int(tail) if tail.isdigit() else 0}
    except asyncpg.PostgresError as exc:
        raise ToolError(f"SQL error: {type(exc).__name__}: {exc}") from None
    finally:
        await conn.close()
