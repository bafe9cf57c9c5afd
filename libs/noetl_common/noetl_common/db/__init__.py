"""Database access shared by the services that own a database (api-shard): pools and migrations."""

from .migrations_runner import (
    SCOPES,
    Migration,
    MigrationError,
    applied_versions,
    apply_migrations,
    load_migrations,
)
from .pool import create_pool, init_connection, ping

__all__ = [
    "SCOPES",
    "Migration",
    "MigrationError",
    "applied_versions",
    "apply_migrations",
    "create_pool",
    "init_connection",
    "ping",
    "load_migrations",
]
