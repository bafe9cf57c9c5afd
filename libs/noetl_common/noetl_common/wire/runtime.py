"""Worker-pool bodies (`/api/worker/pool*`), shaped like NoETL's runtime API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from . import NotBlank


class RuntimeSpec(msgspec.Struct):
    """The Rust worker's `runtime`: `{kind: "rust", worker_public_key: <X25519, base64>}`."""

    kind: NotBlank
    worker_public_key: str | None = None


class PoolRegistration(msgspec.Struct):
    """A pool's registration as a heartbeat carries it: the name may be left to the heartbeat's."""

    name: NotBlank | None = None
    runtime: NotBlank | RuntimeSpec | None = None  # "python" (Python worker) or an object (Rust worker)
    component_type: str | None = None         # "worker_pool" (Rust worker)
    status: str = "ready"
    capacity: Annotated[int, msgspec.Meta(ge=0)] | None = None
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


class PoolRegister(PoolRegistration):
    """POST /api/worker/pool/register."""

    name: NotBlank
    runtime: NotBlank | RuntimeSpec


class PoolHeartbeat(msgspec.Struct):
    name: NotBlank
    registration: PoolRegistration | None = None   # lets a forgotten pool re-register in one call


class PoolDeregister(msgspec.Struct):
    name: NotBlank


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
