"""`kind: transfer`: copy rows from a source (`http`: a JSON list, optionally under `data_path`;
`postgres` or `snowflake`: a `query`) into a Postgres target (`table`, or a `query` with one `%s` per
source column) or a Snowflake `table`, in chunks of `chunk_size` rows, each chunk committed. `mode`:
append (default), replace (truncate the table first) or upsert (postgres target: on conflict of the
first column). An http source's records are mapped to columns by `target.mapping` ({column:
json.field.path}). Snowflake's unquoted column names (upper case) map to Postgres' (lower case).
The result is NoETL's: `{direction, source_type, target_type, mode, rows_transferred,
chunks_processed, ...}`."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import asyncpg

from . import http_tool, postgres, snowflake_tool
from .base import ToolContext, ToolError

SUPPORTED = {("http", "postgres"), ("postgres", "postgres"), ("snowflake", "postgres"), ("postgres", "snowflake")}
MODES = ("append", "replace", "upsert")


def _type(side: dict[str, Any], name: str) -> str:
    kind = str(side.get("tool") or side.get("kind") or side.get("type") or "").lower()
    if not kind:
        raise ToolError(f"transfer `{name}` needs `type` (http or postgres)")
    return kind


def _side(config: dict[str, Any], name: str) -> dict[str, Any]:
    side = config.get(name)
    if not isinstance(side, dict) or not side:
        raise ToolError(f"transfer needs a `{name}` mapping")
    return side


def _ident(name: str) -> str:
    """A possibly schema-qualified table name, each part quoted."""
    parts = [p for p in str(name).split(".") if p]
    if not parts or len(parts) > 2:
        raise ToolError(f"transfer target table {name!r} is not `table` or `schema.table`")
    return ".".join('"' + p.strip('"').replace('"', '""') + '"' for p in parts)


def _sf_ident(name: str, what: str) -> str:
    """A Snowflake name left unquoted (so it resolves case-insensitively, as the playbook wrote it)."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*){0,2}", name):
        raise ToolError(f"transfer into snowflake: {what} {name!r} must be a plain (unquoted) identifier")
    return name


def _dollar_params(query: str) -> str:
    """NoETL's target queries use psycopg's `%s`; asyncpg numbers its parameters."""
    count = 0

    def number(_: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return f"${count}"

    return re.sub(r"%s", number, query)


def field(record: Any, path: str) -> Any:
    """`a.b.c` inside a JSON record; None where any part is missing."""
    value = record
    for part in str(path).split("."):
        value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            return None
    return value


def records_of(body: Any, data_path: str | None) -> list[Any]:
    if data_path:
        for part in data_path.split("."):
            if not isinstance(body, dict):
                break
            body = body.get(part, [])
    return body if isinstance(body, list) else [body]


def insert_sql(table: str, columns: list[str], mode: str) -> str:
    cols = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
    marks = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    sql = f"INSERT INTO {_ident(table)} ({cols}) VALUES ({marks})"
    if mode == "upsert":
        updates = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in columns[1:])
        sql += f' ON CONFLICT ("{columns[0]}") ' + (f"DO UPDATE SET {updates}" if updates else "DO NOTHING")
    return sql


TEXT_TYPES = frozenset({"text", "varchar", "bpchar", "name"})


def as_params(row: tuple, types: list[str]) -> tuple:
    """Values for a text parameter as text: NoETL's driver interpolates on the client, so a number
    into a text column (or `%s || ':'`) works there; asyncpg binds typed and would refuse it."""
    return tuple(str(v) if t in TEXT_TYPES and v is not None and not isinstance(v, str) else v
                 for v, t in zip(row, types))


async def _write(conn: asyncpg.Connection, sql: str, rows: list[tuple], chunk_size: int) -> int:
    statement = await conn.prepare(sql)
    types = [t.name for t in statement.get_parameters()]
    chunks = 0
    for i in range(0, len(rows), chunk_size):
        async with conn.transaction():
            await statement.executemany([as_params(r, types) for r in rows[i:i + chunk_size]])
        chunks += 1
    return chunks


async def run(config: dict[str, Any], inputs: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    source, target = _side(config, "source"), _side(config, "target")
    source_type, target_type = _type(source, "source"), _type(target, "target")
    if (source_type, target_type) not in SUPPORTED:
        raise ToolError(f"transfer {source_type} -> {target_type} is not supported "
                        f"(supported: {', '.join(f'{a} -> {b}' for a, b in sorted(SUPPORTED))})")
    table, target_query = target.get("table"), target.get("query")
    if not table and not target_query:
        raise ToolError("transfer `target` needs `table` or `query`")
    mode = str(config.get("mode") or "append").lower()
    if mode not in MODES:
        raise ToolError(f"transfer `mode` must be one of {', '.join(MODES)}, got {mode!r}")
    try:
        chunk_size = int(config.get("chunk_size") or 1000)
    except (TypeError, ValueError):
        raise ToolError(f"transfer `chunk_size` must be a number, got {config.get('chunk_size')!r}") from None
    if chunk_size < 1:
        raise ToolError("transfer `chunk_size` must be at least 1")
    extra: dict[str, Any] = {}
    if source_type == "http":
        if not source.get("url"):
            raise ToolError("transfer `source.url` is required for an http source")
        mapping = target.get("mapping") or {}
        if not isinstance(mapping, dict) or not mapping:
            raise ToolError("transfer from http needs `target.mapping` ({column: json field})")
        response = await http_tool.run({k: source[k] for k in ("url", "method", "headers", "params", "timeout")
                                        if k in source}, {}, ctx)
        records = records_of(response["body"], source.get("data_path"))
        columns = list(mapping)
        rows = [tuple(field(r, mapping[c]) for c in columns) for r in records]
        extra["records_fetched"] = len(records)
    else:
        if not source.get("query") or not source.get("auth"):
            raise ToolError(f"transfer from {source_type} needs `source.query` and `source.auth`")
        if source_type == "snowflake":
            rows, columns = await _read_snowflake(source, ctx)
            if target_type == "postgres":
                columns = [c.lower() if c.isupper() else c for c in columns]
        else:
            rows, columns = await _read_postgres(source, ctx)
        extra.update(status="success", target_table=table or "custom_query", columns=columns)
    if not target.get("auth"):
        raise ToolError("transfer `target.auth` is required")
    if target_type == "snowflake":
        if not table or target_query:
            raise ToolError("transfer into snowflake needs `target.table` (a target `query` is not supported)")
        if mode == "upsert":
            raise ToolError("transfer into snowflake supports mode append or replace, not upsert")
        chunks = await _write_snowflake(target, str(table), columns, rows, mode, chunk_size, ctx)
    else:
        chunks = await _write_postgres(target, table, target_query, columns, rows, mode, chunk_size, ctx)
    return {"direction": f"{source_type}_to_{target_type}", "source_type": source_type, "target_type": target_type,
            "mode": "custom" if target_query else mode, "rows_transferred": len(rows), "chunks_processed": chunks,
            **extra}


async def _write_postgres(target: dict[str, Any], table: Any, target_query: Any, columns: list[str],
                          rows: list[tuple], mode: str, chunk_size: int, ctx: ToolContext) -> int:
    args = await postgres.connection_args(target, ctx)
    conn = await postgres.connect(args, min(postgres.CONNECT_TIMEOUT, ctx.timeout_seconds))
    try:
        if target_query:
            sql = _dollar_params(str(target_query))
        else:
            sql = insert_sql(str(table), columns, mode)
            if mode == "replace":
                await conn.execute(f"TRUNCATE TABLE {_ident(str(table))}")
        return await _write(conn, sql, rows, chunk_size)
    except asyncpg.PostgresError as exc:
        raise ToolError(postgres.scrub(f"transfer into postgres failed: {type(exc).__name__}: {exc}", args)) from None
    finally:
        await conn.close()


async def _read_snowflake(source: dict[str, Any], ctx: ToolContext) -> tuple[list[tuple], list[str]]:
    params = await snowflake_tool.connection_params(source, ctx)

    def read() -> tuple[list[tuple], list[str]]:
        conn = snowflake_tool.connect(params)
        try:
            cursor = conn.cursor()
            try:
                cursor.execute(str(source["query"]))
                return [tuple(r) for r in cursor.fetchall()], [d[0] for d in cursor.description or []]
            except Exception as exc:
                raise ToolError(f"transfer source query failed: {type(exc).__name__}: {exc}") from None
            finally:
                cursor.close()
        finally:
            conn.close()

    return await asyncio.to_thread(read)


async def _write_snowflake(target: dict[str, Any], table: str, columns: list[str], rows: list[tuple], mode: str,
                           chunk_size: int, ctx: ToolContext) -> int:
    """Bound INSERTs (the connector binds on the client), a chunk a transaction."""
    params = await snowflake_tool.connection_params(target, ctx)
    table = _sf_ident(table, "target table")
    names = ", ".join(_sf_ident(c, "column") for c in columns)
    sql = f"INSERT INTO {table} ({names}) VALUES ({', '.join(['%s'] * len(columns))})"

    def write() -> int:
        conn = snowflake_tool.connect(params)
        try:
            cursor = conn.cursor()
            try:
                if mode == "replace":
                    cursor.execute(f"TRUNCATE TABLE {table}")
                chunks = 0
                for i in range(0, len(rows), chunk_size):
                    cursor.executemany(sql, [tuple(r) for r in rows[i:i + chunk_size]])
                    conn.commit()
                    chunks += 1
                return chunks
            except ToolError:
                raise
            except Exception as exc:
                raise ToolError(f"transfer into snowflake failed: {type(exc).__name__}: {exc}") from None
            finally:
                cursor.close()
        finally:
            conn.close()

    return await asyncio.to_thread(write)


async def _read_postgres(source: dict[str, Any], ctx: ToolContext) -> tuple[list[tuple], list[str]]:
    args = await postgres.connection_args(source, ctx)
    conn = await postgres.connect(args, min(postgres.CONNECT_TIMEOUT, ctx.timeout_seconds))
    try:
        prepared = await conn.prepare(str(source["query"]))
        columns = [a.name for a in prepared.get_attributes()]
        return [tuple(r.values()) for r in await prepared.fetch()], columns
    except asyncpg.PostgresError as exc:
        raise ToolError(postgres.scrub(f"transfer source query failed: {type(exc).__name__}: {exc}", args)) from None
    finally:
        await conn.close()
