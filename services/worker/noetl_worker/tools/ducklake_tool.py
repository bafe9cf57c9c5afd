"""`kind: ducklake`: DuckDB with the DuckLake extension, its catalog in Postgres (so several workers
share one lake without file locks), as NoETL's worker runs it: `ATTACH 'ducklake:postgres:<catalog
connection>' AS <catalog_name> (DATA_PATH '<data_path>')`, `USE` it, then each of `command` (one
text, run whole) and `commands` (a list) in turn. The catalog connection is `catalog_connection`
(a libpq string or postgres:// URL) or the postgres credential `auth` names.

NoETL's result shape and semantics: `{status: ok, result: {command_count, commands: [{command_index,
row_count, columns, rows} | {command_index, affected_rows, status: executed} | {command_index,
status: error, error}]}, catalog_info: {...}}` — a failing command is reported in its entry and the
next one still runs (DuckLake refuses some DuckDB SQL, e.g. PRIMARY KEY); only a catalog that
cannot be attached fails the step. Workers sharing a lake race: a statement that loses a
conflicting commit (two `CREATE TABLE IF NOT EXISTS` of one table) and an ATTACH that loses the
creation of a new lake's catalog run again, with backoff, instead of failing the command."""

from __future__ import annotations

import asyncio
import functools
import random
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from . import duckdb_setup
from .base import ToolContext, ToolError, credential_data, jsonable

QUERY_STARTS = ("SELECT", "FROM", "WITH", "SHOW", "DESCRIBE")
CONFLICT_ATTEMPTS = 6  # a statement that lost a conflicting commit race: tries in all


async def catalog_connection(config: dict[str, Any], ctx: ToolContext) -> tuple[str, str | None]:
    """(the catalog's libpq connection string or URL, its password: kept out of error messages)."""
    explicit = config.get("catalog_connection")
    if isinstance(explicit, str) and explicit.strip():
        return explicit.strip(), _password(explicit.strip())
    auth = config.get("auth") or config.get("credential")
    if isinstance(auth, dict):
        auth = auth.get("key") or next((v.get("key") for v in auth.values() if isinstance(v, dict)), None)
    if not isinstance(auth, str) or not auth.strip():
        raise ToolError("ducklake needs `catalog_connection` (a Postgres connection string) or `auth` "
                        "naming a postgres credential for its catalog")
    data = await credential_data(auth.strip(), ctx)
    fields = {"host": data.get("db_host") or data.get("host"), "port": data.get("db_port") or data.get("port"),
              "dbname": data.get("db_name") or data.get("database"), "user": data.get("db_user") or data.get("user"),
              "password": data.get("db_password") or data.get("password")}
    password = fields["password"]
    return (" ".join(f"{k}={_libpq(v)}" for k, v in fields.items() if v not in (None, "")),
            str(password) if password else None)


def _libpq(value: Any) -> str:
    """A libpq key=value value, quoted (backslash escapes inside)."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _password(connection: str) -> str | None:
    if "://" in connection:
        return urlsplit(connection).password
    for part in connection.split():
        if part.startswith("password="):
            return part[len("password="):].strip("'")
    return None


def _commands(config: dict[str, Any]) -> list[str]:
    commands: list[str] = []
    if isinstance(config.get("command"), str):
        commands.append(config["command"])
    listed = config.get("commands")
    if isinstance(listed, list):
        commands += [str(c) for c in listed]
    elif isinstance(listed, str):
        commands.append(listed)
    commands = [c for c in commands if c.strip()]
    if not commands:
        raise ToolError("ducklake needs `command` (SQL text) or `commands` (a list of SQL texts)")
    return commands


def _ident(name: str) -> str:
    if not name or not name.replace("_", "").isalnum():
        raise ToolError(f"ducklake `catalog_name` must be letters, digits and '_', got {name!r}")
    return name


def _run_command(con: Any, index: int, command: str, *, sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    import duckdb

    try:
        cursor = None
        statements = con.extract_statements(command)
        # Retrying is safe only for a statement that is its own transaction (autocommit).
        explicit = any(str(st.type).endswith("TRANSACTION") for st in statements)
        for statement in statements:
            # A statement that lost a DuckLake commit race to a conflicting one (two workers'
            # `CREATE TABLE IF NOT EXISTS` of the same table: DuckLake itself retries only races
            # without a conflict) runs again, so its `IF NOT EXISTS` sees the winner's table, instead
            # of the command failing and the statements after it (a parallel loop's INSERT) never
            # running. DuckDB wraps it: "TransactionContext Error: Failed to commit: ... Transaction
            # conflict - ...".
            cursor = _retrying(functools.partial(con.execute, statement), sleep, lambda exc: (
                not explicit and isinstance(exc, duckdb.TransactionException) and "Transaction conflict" in str(exc)))
        if command.strip().upper().startswith(QUERY_STARTS) and cursor is not None and cursor.description:
            columns = [d[0] for d in cursor.description]
            rows = [dict(zip(columns, (jsonable(v) for v in row))) for row in cursor.fetchall()]
            return {"command_index": index, "row_count": len(rows), "columns": columns, "rows": rows}
        return {"command_index": index, "affected_rows": cursor.rowcount if cursor is not None else -1,
                "status": "executed"}
    except Exception as exc:
        return {"command_index": index, "status": "error", "error": str(exc)}


def _retrying(run: Callable[[], Any], sleep: Callable[[float], None], retriable: Callable[[Exception], bool]) -> Any:
    """run(), again with backoff while it fails with an answer `retriable` accepts (at most
    CONFLICT_ATTEMPTS tries in all)."""
    for attempt in range(CONFLICT_ATTEMPTS):
        try:
            return run()
        except Exception as exc:
            if attempt + 1 == CONFLICT_ATTEMPTS or not retriable(exc):
                raise
            sleep(random.uniform(0.5, 1.5) * 0.05 * 2 ** attempt)
    raise AssertionError("unreachable")


def _catalog_info(con: Any, catalog: str) -> dict[str, Any]:
    try:
        snapshots = con.execute(f"SELECT * FROM ducklake_snapshots('{catalog}') ORDER BY snapshot_id DESC LIMIT 5")
        snap_cols = [d[0] for d in snapshots.description]
        snap_rows = snapshots.fetchall()
        tables = con.execute(f"SELECT * FROM ducklake_table_info('{catalog}')")
        table_cols = [d[0] for d in tables.description]
        table_rows = [jsonable(dict(zip(table_cols, r))) for r in tables.fetchall()]
    except Exception as exc:
        return {"catalog_name": catalog, "error": str(exc)}
    return {"catalog_name": catalog, "snapshot_count": len(snap_rows),
            "latest_snapshot": jsonable(dict(zip(snap_cols, snap_rows[0]))) if snap_rows else None,
            "table_count": len(table_rows), "tables": table_rows}


def _attach(con: Any, attach: str, sleep: Callable[[float], None] = time.sleep) -> None:
    """ATTACH; a new lake's first ATTACH creates its catalog tables, and workers attaching it at
    the same moment race to: the losers find the tables there ("already exists") and attach again."""
    _retrying(lambda: con.execute(attach), sleep, lambda exc: "already exists" in str(exc))


def _run(connection: str, password: str | None, catalog: str, data_path: str, commands: list[str]) -> dict[str, Any]:
    import duckdb

    if "://" not in data_path:
        Path(data_path).mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(":memory:")
    try:
        try:
            duckdb_setup.install_bundled(con)
            con.execute("LOAD ducklake; LOAD postgres;")
            _attach(con, f"ATTACH 'ducklake:postgres:{duckdb_setup.quote(connection)}' AS {catalog} "
                         f"(DATA_PATH '{duckdb_setup.quote(data_path)}')")
            con.execute(f"USE {catalog}")
        except Exception as exc:
            message = str(exc).replace(password, "***") if password else str(exc)
            raise ToolError(f"ducklake could not attach catalog {catalog!r}: {type(exc).__name__}: {message}") from None
        results = [_run_command(con, i, c) for i, c in enumerate(commands)]
        return {"status": "ok", "result": {"command_count": len(results), "commands": results},
                "catalog_info": _catalog_info(con, catalog)}
    finally:
        con.close()


async def run(config: dict[str, Any], inputs: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    catalog = _ident(str(config.get("catalog_name") or ""))
    data_path = str(config.get("data_path") or "")
    if not data_path:
        raise ToolError("ducklake needs `data_path` (where the lake's data files go)")
    commands = _commands(config)
    connection, password = await catalog_connection(config, ctx)
    return await asyncio.to_thread(_run, connection, password, catalog, data_path, commands)
