"""Which worker pool a command goes to, and the NATS subject announcing it: NoETL's rules
(contract §8; the Rust server's precedence, which NoETL workers subscribe by).

1. the pool the execute request named (`execution_pool`);
2. the playbook's catalog path: `system/...` -> `system`, `subscription/...` -> `subscription`;
3. otherwise `shared`.
The subject is `noetl.commands.<pool>.<execution_id>`; with command-subject sharding on and more
than one command shard, the `system` pool's becomes `noetl.commands.system.shard.<n>.<execution_id>`
(n = XXH64 of the execution id mod the count), still under a `noetl.commands.system.>` consumer.
"""

from __future__ import annotations

import re

from .sharding import shard_for

_COMMANDS = "noetl.commands."
DEFAULT_POOL = "shared"
SHARDABLE_POOL = "system"
_PATH_POOLS = (("system/", "system"), ("subscription/", "subscription"))
POOL_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_POOL_NAME = re.compile(POOL_PATTERN)


def valid_pool(name: str) -> bool:
    """A pool name is one NATS subject token."""
    return bool(_POOL_NAME.match(name))


def resolve_pool(execution_pool: str | None, path: str | None) -> str:
    if execution_pool:
        return execution_pool
    bare = (path or "").lstrip("/")
    for prefix, pool in _PATH_POOLS:
        if bare.startswith(prefix):
            return pool
    return DEFAULT_POOL


def command_subject(pool: str, execution_id: int, *, shard_route: bool = False, shard_count: int = 1) -> str:
    if shard_route and shard_count > 1 and pool == SHARDABLE_POOL:
        return f"{_COMMANDS}{pool}.shard.{shard_for(execution_id, shard_count)}.{execution_id}"
    return f"{_COMMANDS}{pool}.{execution_id}"


def pool_commands_filter(pool: str) -> str:
    """Every command subject of a pool, sharded ones included: a worker's consumer filter."""
    return f"{_COMMANDS}{pool}.>"
