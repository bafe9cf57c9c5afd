"""`history prepare|unprepare`: the online pre-step of migration 0007 (noetl_common.db.history_prepare)
against each shard database given, one after the other.

It talks to the databases, not to the shards: the shards it prepares still run the release before
0007, which has no route for it. Run it from the new release (its image or checkout)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import urlsplit

import msgspec

from noetl_common.db import history_prepare
from noetl_common.db.history_prepare import PrepareError, PrepareReport

from .errors import OpsError

DSN_ENV = "NOETL_SHARD_DSN"


class ShardPrepare(msgspec.Struct, kw_only=True):
    database: str                      # host:port/dbname, never the DSN (it may hold a password)
    report: PrepareReport | None = None
    error: str | None = None


def dsns(flags: list[str] | None, files: list[Path] | None, env: Mapping[str, str]) -> list[str]:
    """Shard DSNs from --dsn, then --dsn-file (one DSN per file: the Secret noetl-db's
    shard-<i>-dsn keys mount as such files), else NOETL_SHARD_DSN."""
    out = list(flags or [])
    for path in files or []:
        try:
            value = path.read_text().strip()
        except OSError as exc:
            raise OpsError(f"--dsn-file {path}: {exc.strerror}") from None
        if not value:
            raise OpsError(f"--dsn-file {path} is empty")
        out.append(value)
    if not out and env.get(DSN_ENV):
        out.append(env[DSN_ENV])
    if not out:
        raise OpsError(f"no shard database: pass --dsn-file FILE or --dsn DSN (repeatable), or set {DSN_ENV}")
    return out


def database_of(dsn: str, n: int) -> str:
    """Where a DSN points, without its credentials."""
    parts = urlsplit(dsn)
    if parts.scheme.startswith("postgres") and parts.hostname:
        return f"{parts.hostname}:{parts.port or 5432}{parts.path}"
    return f"database #{n + 1}"  # a key=value DSN: not parsed, so nothing of it is printed


async def run(action: str, targets: list[str], *, hours: float, say: Callable[[str], None]) -> list[ShardPrepare]:
    out = []
    for n, dsn in enumerate(targets):
        where = database_of(dsn, n)
        say(f"{where}:")
        try:
            if action == "prepare":
                report = await history_prepare.prepare(dsn, say=lambda line: say(f"  {line}"), window_hours=hours)
            else:
                report = await history_prepare.unprepare(dsn, say=lambda line: say(f"  {line}"))
            out.append(ShardPrepare(database=where, report=report))
        except (PrepareError, OSError) as exc:
            out.append(ShardPrepare(database=where, error=str(exc)))
            say(f"  error: {exc}")
        except Exception as exc:  # asyncpg's: a sentence per database, the others still run
            out.append(ShardPrepare(database=where, error=f"{type(exc).__name__}: {exc}"))
            say(f"  error: {type(exc).__name__}: {exc}")
    return out
