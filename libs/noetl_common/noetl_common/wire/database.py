"""NoETL's database routes: `POST /api/postgres/execute`, `GET /api/db/validate`, `POST /api/db/init`.

NoETL's server runs SQL on its one database; the fleet has a cluster database and one per shard,
so a request names its `target` and every answer says which `database` it ran on."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

# cluster: catalog, credentials, keychain, runtime; shard: one shard's executions (`shard` picks
# it through the router); all_shards: the router runs it on every shard and concatenates rows.
Target = Literal["cluster", "shard", "all_shards"]
MAX_ROWS = 10_000
# Postgres cancels a statement running longer (statement_timeout), well inside the HTTP deadline,
# so the connection goes back to the pool instead of running on unseen.
MAX_STATEMENT_SECONDS = 30


class PostgresExecute(msgspec.Struct, kw_only=True):
    query: str | None = None
    query_base64: str | None = None          # NoETL's alternative to `query`
    procedure: str | None = None             # NoETL's name for a CALL; run like a query
    parameters: list[Any] | None = None      # $1, $2, ... (asyncpg's placeholders)
    schema: str | None = None                # put first on search_path (the CLI sends "noetl")
    target: Target = "cluster"
    shard: int | None = None                 # with target "shard": which one (the router routes by it)
    max_rows: Annotated[int, msgspec.Meta(ge=1, le=MAX_ROWS)] = 1000  # `truncated` says more rows existed
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=MAX_STATEMENT_SECONDS)] = MAX_STATEMENT_SECONDS
    # NoETL's ways to reach another database; refused here (this API reaches the fleet's own only).
    database: str | None = None
    credential: str | None = None
    connection_string: str | None = None


class PostgresExecuteResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    status: str                               # NoETL's: "ok" (SQL errors are a 400 here)
    # Rows as lists of values, in `columns` order (the CLI's table format reads arrays);
    # None for a statement returning no rows.
    result: list[list[Any]] | None = None
    columns: list[str] | None = None
    database: str                             # "cluster", "shard 2", or "all shards"
    shard: int | None = None
    row_count: int = 0
    truncated: bool = False                   # more rows existed than max_rows
    command: str | None = None                # Postgres's status, e.g. "INSERT 0 1"
    shards: list["PostgresExecuteResponse"] | None = None  # all_shards: each shard's answer


class MigrationState(msgspec.Struct, kw_only=True):
    database: str                             # "cluster" or "shard N"
    applied: list[str]
    pending: list[str]


class DbValidateResponse(msgspec.Struct, kw_only=True):
    status: str                               # ok | error (NoETL's)
    valid: bool
    tables: list[str]                         # the noetl schema's tables found
    missing: list[str]                        # migrations not applied (database: label)
    databases: list[MigrationState]


class DbInitResponse(msgspec.Struct, kw_only=True):
    status: str
    message: str
    applied: list[str]                        # migrations this call applied (database: label)
    databases: list[MigrationState]
