"""`kind: postgres`: connection from an `auth`/`credential` name resolved through the control plane
(data: db_host, db_port, db_user, db_password, db_name), a map-form auth, a `connection_string`,
or inline fields. All statements run in one transaction; the last statement's rows are the
result: `{columns, rows, row_count}`, or `{affected_rows}` when it returns none. json/jsonb
values come back parsed. The password never appears in an error or a log line."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg

from .base import ToolContext, ToolError, jsonable, split_statements, sql_text
from .scripts import script_text

CONNECT_TIMEOUT = 15.0


async def _credential_data(name: str, ctx: ToolContext) -> dict[str, Any]:
    try:
        credential = await ctx.credentials.get_credential(name)
    except Exception as exc:
        raise ToolError(f"postgres credential {name!r} could not be resolved: {exc}") from None
    data = credential.get("data") if isinstance(credential, dict) else None
    if not isinstance(data, dict):
        raise ToolError(f"postgres credential {name!r} has no data (was it fetched with include_data?)")
    return data


async def connection_args(config: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    auth = config.get("auth") or config.get("credential")
    if isinstance(auth, dict) and not ("db_host" in auth or "host" in auth):
        # Map-form auth: `{key: alias}` or `{<name>: {source: credential, type: postgres, key: alias}}`.
        if auth.get("key"):
            auth = str(auth["key"])
        else:
            entries = [v for v in auth.values() if isinstance(v, dict) and v.get("key")
                       and str(v.get("type", "postgres")).lower() in ("postgres", "postgresql")]
            if not entries:
                raise ToolError("postgres `auth` map names no postgres credential (`key`)")
            auth = str(entries[0]["key"])
    if isinstance(auth, dict):
        data = auth
    elif isinstance(auth, str) and auth.strip():
        data = await _credential_data(auth.strip(), ctx)
    elif config.get("connection_string") or config.get("dsn"):
        return {"dsn": str(config.get("connection_string") or config.get("dsn"))}
    else:
        data = config
    if data.get("connection_string") or data.get("dsn"):
        return {"dsn": str(data.get("connection_string") or data.get("dsn"))}
    host = data.get("db_host") or data.get("host")
    if not host:
        raise ToolError("postgres tool needs `auth` naming a credential, a `connection_string`, "
                        "or connection fields (host, port, user, password, database)")
    try:
        port = int(data.get("db_port") or data.get("port") or 5432)
    except (TypeError, ValueError):
        raise ToolError(f"postgres port must be a number, got {data.get('db_port') or data.get('port')!r}") from None
    return {"host": str(host), "port": port, "user": data.get("db_user") or data.get("user"),
            "password": data.get("db_password") or data.get("password"),
            "database": data.get("db_name") or data.get("database") or data.get("dbname")}


def scrub(message: str, args: dict[str, Any]) -> str:
    secret = args.get("password")
    if secret:
        message = message.replace(str(secret), "***")
    dsn = args.get("dsn")
    if dsn and "@" in dsn:
        message = message.replace(dsn, _redacted_dsn(dsn))
    return message


def _redacted_dsn(dsn: str) -> str:
    scheme, _, rest = dsn.partition("://")
    creds, _, host = rest.rpartition("@")
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"


def _where(args: dict[str, Any]) -> str:
    if "dsn" in args:
        return _redacted_dsn(args["dsn"]) if "@" in args["dsn"] else "the configured DSN"
    return f"{args.get('host')}:{args.get('port')}"


def _encode_json(value: Any) -> str:
    """Parameters for json columns: text passes through (already JSON), anything else is encoded."""
    return value if isinstance(value, str) else json.dumps(value)


async def connect(args: dict[str, Any], timeout: float) -> asyncpg.Connection:
    try:
        conn = await asyncio.wait_for(asyncpg.connect(**args, timeout=timeout), timeout + 1)
    except Exception as exc:
        raise ToolError(scrub(f"could not connect to postgres at {_where(args)}: {type(exc).__name__}: {exc}",
                               args)) from None
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(typename, encoder=_encode_json, decoder=json.loads, schema="pg_catalog")
    return conn


def _params(config: dict[str, Any]) -> list[Any]:
    params = config.get("params")
    if params is None:
        return []
    if not isinstance(params, (list, tuple)):
        raise ToolError("postgres `params` must be a list (positional $1, $2, ...)")
    return list(params)


async def _run(conn: asyncpg.Connection, statements: list[str], params: list[Any],
               schema: str | None) -> dict[str, Any]:
    async with conn.transaction():
        if schema:
            await conn.execute(f"SET LOCAL search_path TO {_ident(schema)}, public")
        for stmt in statements[:-1]:
            await conn.execute(stmt)
        prepared = await conn.prepare(statements[-1])
        records = await prepared.fetch(*params)
        attributes = prepared.get_attributes()
        if attributes:
            columns = [a.name for a in attributes]
            rows = [{c: jsonable(v) for c, v in zip(columns, r.values())} for r in records]
            return {"status": "success", "columns": columns, "rows": rows, "row_count": len(rows)}
        tail = (prepared.get_statusmsg() or "").split()[-1:] or ["0"]
        return {"status": "success", "affected_rows": int(tail[0]) if tail[0].isdigit() else 0}


def _ident(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


async def run(config: dict[str, Any], inputs: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    text = await script_text("postgres", config["script"], ctx) if config.get("script") and not config.get("command") \
        else sql_text(config)
    statements = split_statements(text)
    if not statements:
        raise ToolError("postgres `command` has no SQL statement (only comments or whitespace)")
    params = _params(config)
    args = await connection_args(config, ctx)
    conn = await connect(args, min(CONNECT_TIMEOUT, ctx.timeout_seconds))
    try:
        return await _run(conn, statements, params, config.get("schema"))
    except asyncpg.PostgresError as exc:
        detail = f" ({exc.detail})" if getattr(exc, "detail", None) else ""
        raise ToolError(scrub(f"SQL error: {type(exc).__name__}: {exc}{detail}", args)) from None
    except (asyncpg.InterfaceError, OSError) as exc:
        raise ToolError(scrub(f"postgres connection failed during the query: {type(exc).__name__}: {exc}",
                               args)) from None
    finally:
        # Never wait long on close: a stuck server must not hang the step past its timeout.
        try:
            await asyncio.wait_for(conn.close(), 5)
        except Exception:
            conn.terminate()
