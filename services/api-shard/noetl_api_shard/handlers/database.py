"""NoETL's database routes on one shard: run SQL (`POST /api/postgres/execute`) on the cluster
database or this shard's, and report or apply the migrations (`/api/db/validate`, `/api/db/init`).
SQL and init are for trusted callers only, by the same rule as decrypted secrets
(noetl_common.trust); validate only reads the migration bookkeeping."""

from __future__ import annotations

import base64
import logging
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from noetl_common.db import apply_migrations
from noetl_common.db.migrations_runner import SCOPES, applied_versions, load_migrations
from noetl_common.errors import DB_UNAVAILABLE, ApiError, bad_request, read_json
from noetl_common.openapi import Op, route
from noetl_common.wire.database import (MAX_STATEMENT_SECONDS, DbInitResponse, DbValidateResponse, MigrationState,
                                        PostgresExecute, PostgresExecuteResponse)

from ..state import ShardServices, services, trusted_services

log = logging.getLogger("noetl.api_shard.database")

# Rows are str()-ed when JSON has no type for them (intervals, ranges, geometric types, ...).
_encoder = msgspec.json.Encoder(enc_hook=str)


def register(app: web.Application) -> None:
    route(app, "POST", "/api/postgres/execute", execute, Op(
        summary="Run SQL on the cluster database or a shard's (trusted callers only)", body=PostgresExecute,
        ok=PostgresExecuteResponse, errors=(400, 403, 422),
        description="target: cluster (default), shard (with `shard`, through the router) or all_shards (the "
                    "router runs it on every shard). The answer names the database. SQL errors are a 400 "
                    f"with Postgres's message and sqlstate; a statement is cancelled after timeout_seconds "
                    f"(at most {MAX_STATEMENT_SECONDS}); at most max_rows rows come back."))
    route(app, "GET", "/api/db/validate", validate, Op(
        summary="Whether the cluster database and this shard's have every migration applied",
        ok=DbValidateResponse))
    route(app, "POST", "/api/db/init", init, Op(
        summary="Apply pending migrations to the cluster database and this shard's (idempotent; trusted only)",
        ok=DbInitResponse, errors=(403,)))


def _sql(body: PostgresExecute) -> str:
    for field in ("database", "credential", "connection_string"):
        if getattr(body, field) is not None:
            raise bad_request(f"{field} is not supported: this API runs SQL on the fleet's own databases "
                              "(choose one with target and shard)", "unsupported_field")
    if body.query_base64 and not body.query:
        try:
            return base64.b64decode(body.query_base64, validate=True).decode("utf-8").strip()
        except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII text (a 500 found by fuzzing)
            raise bad_request("query_base64 is not base64 of UTF-8 text", "bad_query") from None
    sql = (body.query or body.procedure or "").strip()
    if not sql:
        raise bad_request("query (or query_base64, or procedure) is required", "missing_query")
    return sql


def _pool(svc: ShardServices, body: PostgresExecute) -> tuple[asyncpg.Pool, str, int | None]:
    if body.target == "cluster":
        return svc.cluster_pool, "cluster", None
    if body.target == "all_shards":
        raise bad_request("target all_shards is answered by the router (this is one shard)", "bad_target")
    index = svc.settings.shard_index
    if body.shard is not None and body.shard != index:
        raise bad_request(f"shard {body.shard} was asked for, but this is shard {index}; "
                          "send the request through the router", "wrong_shard")
    return svc.shard_pool, f"shard {index}", index


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


async def execute(request: web.Request) -> web.Response:
    svc = trusted_services(request, "postgres/execute")
    body = await read_json(request, PostgresExecute)
    sql = _sql(body)
    pool, database, shard = _pool(svc, body)
    try:
        async with pool.acquire() as conn, conn.transaction():
            answer = await _run(conn, sql, body)
    except (ValueError, TypeError, OverflowError) as exc:  # a parameter asyncpg cannot encode (its DataError)
        raise ApiError(400, f"parameters: {exc}", "bad_parameters", database=database) from None
    except DB_UNAVAILABLE:
        raise  # the database going away is the server's trouble: a 503 from the error middleware
    except asyncpg.PostgresError as exc:
        if isinstance(exc, asyncpg.QueryCanceledError):
            message = f"statement cancelled after {body.timeout_seconds:g} s (statement_timeout)"
        else:
            message = str(exc)
        raise ApiError(400, message, "sql_error", sqlstate=exc.sqlstate, database=database) from None
    answer.database, answer.shard = database, shard
    log.info("postgres/execute on %s: %s", database, answer.command or f"{answer.row_count} rows")
    return web.Response(body=_encoder.encode(answer), content_type="application/json")


async def _run(conn: asyncpg.Connection, sql: str, body: PostgresExecute) -> PostgresExecuteResponse:
    await conn.execute("SELECT set_config('statement_timeout', $1, true)", str(max(1, round(body.timeout_seconds * 1000))))
    if body.schema:
        await conn.execute("SELECT set_config('search_path', $1, true)", f"{_quoted(body.schema)}, public")
    args = body.parameters or []
    try:
        async with conn.transaction():  # a savepoint: a refused prepare must not abort the rest
            statement = await conn.prepare(sql)
    except asyncpg.PostgresSyntaxError as exc:
        if args or "multiple commands" not in str(exc):
            raise
        # Several statements in one text (a script) cannot be prepared: run it whole, no rows back.
        return PostgresExecuteResponse(status="ok", database="", command=await conn.execute(sql))
    if not statement.get_attributes():  # no rows (DDL, INSERT without RETURNING, ...)
        await statement.fetch(*args)
        return PostgresExecuteResponse(status="ok", database="", command=statement.get_statusmsg())
    cursor = await statement.cursor(*args)
    rows = await cursor.fetch(body.max_rows + 1)
    truncated = len(rows) > body.max_rows
    result: list[list[Any]] = [list(r.values()) for r in rows[:body.max_rows]]
    return PostgresExecuteResponse(status="ok", database="", result=result, row_count=len(result),
                                   columns=[a.name for a in statement.get_attributes()], truncated=truncated)


async def _states(svc: ShardServices) -> list[MigrationState]:
    pools = {"cluster": svc.cluster_pool, "shard": svc.shard_pool}
    states = []
    for scope in SCOPES:
        known = load_migrations(scope)
        try:
            done = set(await applied_versions(pools[scope], scope))
        except asyncpg.UndefinedTableError:
            done = set()  # never migrated: no bookkeeping table yet
        name = "cluster" if scope == "cluster" else f"shard {svc.settings.shard_index}"
        states.append(MigrationState(database=name, applied=[m.label for m in known if m.version in done],
                                     pending=[m.label for m in known if m.version not in done]))
    return states


async def validate(request: web.Request) -> web.Response:
    svc = services(request)
    states = await _states(svc)
    # A partitioned table is one table here, not one per time slice.
    tables = await svc.shard_pool.fetch(
        "SELECT c.relname AS table_name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'noetl' AND c.relkind IN ('r', 'p', 'v') AND NOT c.relispartition ORDER BY 1")
    missing = [f"{s.database}: {label}" for s in states for label in s.pending]
    return _json(DbValidateResponse(status="ok" if not missing else "error", valid=not missing,
                                    tables=[r["table_name"] for r in tables], missing=missing, databases=states))


async def init(request: web.Request) -> web.Response:
    svc = trusted_services(request, "db/init")
    applied = [f"shard {svc.settings.shard_index}: {m.label}" for m in await apply_migrations(svc.shard_pool, "shard")]
    applied += [f"cluster: {m.label}" for m in await apply_migrations(svc.cluster_pool, "cluster")]
    message = f"applied {len(applied)} migrations" if applied else "schema is current; nothing to apply"
    return _json(DbInitResponse(status="ok", message=message, applied=applied, databases=await _states(svc)))


def _json(payload: Any) -> web.Response:
    return web.Response(body=_encoder.encode(payload), content_type="application/json")
