"""Numbered SQL migrations, applied once each, in order, at service start-up.

Files live in package data folders `noetl_common/db/migrations/<scope>/NNNN_name.sql`, one folder per
database role (`shard`, `cluster`). Applied versions are recorded in `noetl.schema_migrations`
keyed by (scope, version), so one database may host both scopes (single-database dev setups).

Concurrency: the whole run is one transaction holding a transaction-level advisory lock, so two
processes starting at once serialise; the second finds everything applied and does nothing. A
migration that fails rolls back with everything else in that run (nothing half-applied).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
from typing import Iterable, Sequence

import asyncpg
import msgspec

SCOPES = ("shard", "cluster")
MIGRATIONS_PACKAGE = "noetl_common.db.migrations"
# One lock per database, whatever the scope: both scopes share the schema_migrations table.
ADVISORY_LOCK_KEY = 0x6E6F65746C6D6967  # "noetlmig"

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_REPLACES = re.compile(r"^-- replaces sha256:([0-9a-f]{64})\s*$", re.MULTILINE)

_BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS noetl;
CREATE TABLE IF NOT EXISTS noetl.schema_migrations (
    scope       text        NOT NULL,
    version     integer     NOT NULL,
    name        text        NOT NULL,
    checksum    text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, version)
);
"""


class MigrationError(Exception):
    """A migration set is malformed, or an applied migration was edited after the fact."""


class Migration(msgspec.Struct, frozen=True):
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()

    @property
    def replaces(self) -> frozenset[str]:
        """Checksums of earlier texts this one declares equivalent where they were applied."""
        return frozenset(_REPLACES.findall(self.sql))

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"

    def __repr__(self) -> str:  # the SQL text is too long to be useful in a repr
        return f"Migration({self.label})"


def load_migrations(scope: str, package: str = MIGRATIONS_PACKAGE) -> list[Migration]:
    """The migrations of one scope, ordered by version; rejects duplicate numbers and bad names."""
    if scope not in SCOPES:
        raise MigrationError(f"unknown migration scope {scope!r}; expected one of {SCOPES}")
    folder = importlib.resources.files(f"{package}.{scope}")
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if not match:
            raise MigrationError(f"migration file {entry.name!r} must be named NNNN_lower_snake.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two {scope} migrations share number {version:04d}")
        found[version] = Migration(version, match.group(2), entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


async def apply_migrations(target: asyncpg.Pool | asyncpg.Connection, scope: str,
                           migrations: Sequence[Migration] | None = None) -> list[Migration]:
    """Apply every not-yet-applied migration of `scope`; return the ones applied by this call."""
    pending_set = list(migrations) if migrations is not None else load_migrations(scope)
    _check_ordered(pending_set, scope)
    if isinstance(target, asyncpg.Pool):
        async with target.acquire() as conn:
            return await _apply(conn, scope, pending_set)
    return await _apply(target, scope, pending_set)


async def applied_versions(conn: asyncpg.Connection | asyncpg.Pool, scope: str) -> list[int]:
    rows = await conn.fetch(
        "SELECT version FROM noetl.schema_migrations WHERE scope = $1 ORDER BY version", scope)
    return [r["version"] for r in rows]


def _check_ordered(migrations: Iterable[Migration], scope: str) -> None:
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate {scope} migration numbers: {versions}")


async def _apply(conn: asyncpg.Connection, scope: str, migrations: Sequence[Migration]) -> list[Migration]:
    applied_now: list[Migration] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", ADVISORY_LOCK_KEY)
        await conn.execute(_BOOTSTRAP)
        rows = await conn.fetch(
            "SELECT version, name, checksum FROM noetl.schema_migrations WHERE scope = $1", scope)
        recorded = {r["version"]: r for r in rows}
        for migration in sorted(migrations, key=lambda m: m.version):
            previous = recorded.get(migration.version)
            if previous is not None:
                if previous["checksum"] != migration.checksum and previous["checksum"] not in migration.replaces:
                    raise MigrationError(
                        f"{scope} migration {migration.label} changed after it was applied; "
                        "add a new migration instead of editing an applied one")
                continue
            try:
                await conn.execute(migration.sql)
            except asyncpg.PostgresError as exc:
                raise MigrationError(f"{scope} migration {migration.label} failed: {exc}") from exc
            await conn.execute(
                "INSERT INTO noetl.schema_migrations (scope, version, name, checksum) VALUES ($1, $2, $3, $4)",
                scope, migration.version, migration.name, migration.checksum)
            applied_now.append(migration)
    return applied_now
