"""`kind: snowflake`: SQL through Snowflake's Python connector, as NoETL's worker runs it. The
connection comes from the `auth` (or `credential`) credential's data: account, user, password (or
private_key), warehouse, database, schema, role, authenticator; a stand-in's address may be given
too (host, port, protocol), which the connector takes as is. Statements run one by one; the result
is NoETL's `{id, status: success, data: {statement_<i>: {status, row_count, result: [rows],
columns, query} | {status, rows_affected, query}}}`, and the first failing statement fails the
step naming it. Runs on a thread: the connector is blocking."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from .base import ToolContext, ToolError, credential_data, jsonable, split_statements, sql_text

CONNECT_FIELDS = ("account", "user", "password", "warehouse", "database", "schema", "role", "authenticator",
                  "host", "port", "protocol")
DEFAULTS = {"warehouse": "COMPUTE_WH", "schema": "PUBLIC"}


async def connection_params(config: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """The connector's keyword arguments from the credential (NoETL's field names, `sf_` prefixed too)."""
    auth = config.get("auth") or config.get("credential")
    if isinstance(auth, dict):
        auth = auth.get("key") or auth.get("credential") or next(
            (v.get("key") for v in auth.values() if isinstance(v, dict) and v.get("key")), None)
    if not isinstance(auth, str) or not auth.strip():
        raise ToolError("snowflake tool needs `auth` naming a snowflake credential")
    data = await credential_data(auth.strip(), ctx)
    params: dict[str, Any] = {}
    for field in CONNECT_FIELDS:
        value = data.get(field) or data.get(f"sf_{field}") or DEFAULTS.get(field)
        if value in (None, ""):
            continue
        try:
            params[field] = int(value) if field == "port" else value
        except (TypeError, ValueError):
            raise ToolError(f"snowflake credential {auth!r}: port must be a number, got {value!r}") from None
    if not params.get("account") or not params.get("user"):
        raise ToolError(f"snowflake credential {auth!r} needs account and user")
    if not params.get("password"):
        raise ToolError(f"snowflake credential {auth!r} needs a password (key-pair sign-in is not offered here)")
    # No telemetry or retries against a stand-in: a refused statement fails at once.
    params.setdefault("session_parameters", {"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False})
    return params


def connect(params: dict[str, Any]) -> Any:
    import snowflake.connector

    try:
        return snowflake.connector.connect(**params, login_timeout=30, network_timeout=60)
    except Exception as exc:
        message = str(exc).replace(str(params.get("password")), "***")
        raise ToolError(f"snowflake connection failed: {type(exc).__name__}: {message}") from None


def run_statement(conn: Any, statement: str) -> dict[str, Any]:
    from snowflake.connector import DictCursor

    query = statement[:200] + ("..." if len(statement) > 200 else "")
    cursor = conn.cursor(DictCursor)
    try:
        cursor.execute(statement)
        if cursor.description:
            rows = [jsonable(dict(r)) for r in cursor.fetchall()]
            return {"status": "success", "row_count": len(rows), "result": rows, "query": query,
                    "columns": [d[0] for d in cursor.description]}
        return {"status": "success", "rows_affected": cursor.rowcount, "query": query}
    finally:
        cursor.close()


def _run_all(params: dict[str, Any], statements: list[str]) -> dict[str, Any]:
    conn = connect(params)
    results: dict[str, Any] = {}
    try:
        for i, statement in enumerate(statements):
            try:
                results[f"statement_{i}"] = run_statement(conn, statement)
            except Exception as exc:
                raise ToolError(f"snowflake statement_{i} failed: {exc} (query: {statement[:200]})") from None
    finally:
        conn.close()
    return results


async def run(config: dict[str, Any], inputs: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    statements = split_statements(sql_text(config))
    if not statements:
        raise ToolError("snowflake `command` has no SQL statement (only comments or whitespace)")
    params = await connection_params(config, ctx)
    results = await asyncio.to_thread(_run_all, params, statements)
    return {"id": str(uuid.uuid4()), "status": "success", "data": results}
