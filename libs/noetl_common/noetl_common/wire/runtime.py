"""Worker-pool bodies (`/api/worker/pool*`), shaped like NoETL's runtime API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class RuntimeSpec(msgspec.Struct):
    """The Rust worker's `runtime`: `{kind: "rust", worker_public_key: <X25519, base64>}`."""

    kind: str | None = None
    worker_public_key: str | None = None


class PoolRegister(msgspec.Struct):
    name: str | None = None
    runtime: str | RuntimeSpec | None = None  # "python" (Python worker) or an object (Rust worker)
    component_type: str | None = None         # "worker_pool" (Rust worker)
    status: str = "ready"
    capacity: int | None = None
    labels: dict[str, Any] | None = None
    capabilities: Any = None
    pid: int | None = None
    hostname: str | None = None
    uri: str | None = None
    meta: dict[str, Any] | None = None


class PoolRegistered(msgspec.Struct):
    status: str                          # ok | recreated
    name: str
    runtime_id: str
    kind: str | None = None
    runtime: str | None = None


class PoolHeartbeat(msgspec.Struct):
    name: str | None = None
    registration: PoolRegister | None = None   # lets a forgotten pool re-register in one call


class PoolDeregister(msgspec.Struct):
    name: str | None = None


class PoolDeregistered(msgspec.Struct):
    status: str
    name: str
    runtime_id: str


class PoolItem(msgspec.Struct):
    name: str
    runtime_id: str
    runtime: str | None
    status: str
    capacity: int | None
    labels: Any
    uri: str | None
    heartbeat: datetime | None
    created_at: datetime
    updated_at: datetime


class PoolList(msgspec.Struct, omit_defaults=True):
    items: list[PoolItem]
    count: int
    runtime: str | None = None
    status: str | None = None
