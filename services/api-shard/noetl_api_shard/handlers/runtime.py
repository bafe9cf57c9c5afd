"""/api/worker/pool*: worker pools register (upsert = heartbeat), beat, deregister, list."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from noetl_common.errors import ApiError, bad_request, json_response, not_found, read_json
from noetl_common.openapi import Op, Param, route
from noetl_common.wire.runtime import (
    PoolDeregister,
    PoolDeregistered,
    PoolHeartbeat,
    PoolItem,
    PoolList,
    PoolRegister,
    PoolRegistration,
    PoolRegistered,
    RuntimeSpec,
)

from ..state import ShardServices, services
from ..store import runtime as store
from .params import query_str

HEARTBEAT_RETRY_AFTER_SECONDS = 3


def register(app: web.Application) -> None:
    route(app, "POST", "/api/worker/pool/register", register_pool, Op(
        summary="Register (or refresh) a worker pool", body=PoolRegister, ok=PoolRegistered, errors=(400, 422)))
    route(app, "POST", "/api/worker/pool/heartbeat", heartbeat, Op(
        summary="A worker pool's heartbeat (re-registers with `registration`)", body=PoolHeartbeat,
        ok=PoolRegistered, errors=(400, 404, 422)))
    route(app, "POST", "/api/worker/pool/deregister", deregister, Op(
        summary="Deregister a worker pool", body=PoolDeregister, ok=PoolDeregistered, errors=(400, 404, 422)))
    route(app, "DELETE", "/api/worker/pool/deregister", deregister, Op(
        summary="Deregister a worker pool", body=PoolDeregister, ok=PoolDeregistered, errors=(400, 404, 422)))
    route(app, "GET", "/api/worker/pools", list_pools, Op(
        summary="List worker pools", ok=PoolList, query=(Param(name="runtime"), Param(name="status"))))


async def _upsert(svc: ShardServices, body: PoolRegistration) -> tuple[asyncpg.Record, bool]:
    # PoolRegister requires name and runtime; a heartbeat's registration may leave them out (its
    # name is the heartbeat's), so they are checked here too.
    name = (body.name or "").strip()
    if not name:
        raise bad_request("name is required")
    spec = body.runtime if isinstance(body.runtime, RuntimeSpec) else RuntimeSpec(kind=body.runtime or "")
    kind = (spec.kind or "").strip()
    if not kind:
        raise bad_request('runtime is required: a name ("python") or an object with a kind ({"kind": "rust"})')
    runtime = {"type": kind, "pid": body.pid, "hostname": body.hostname, "meta": body.meta,
               "worker_public_key": spec.worker_public_key}
    return await store.register(
        svc.cluster_pool, new_id=svc.new_cluster_id(), name=name, status=body.status, uri=body.uri,
        labels=body.labels, capabilities=body.capabilities, capacity=body.capacity, runtime=runtime)


def _runtime_type(row: asyncpg.Record) -> str | None:
    runtime = row["runtime"]
    return runtime.get("type") if isinstance(runtime, dict) else None


async def register_pool(request: web.Request) -> web.Response:
    body = await read_json(request, PoolRegister)
    row, _ = await _upsert(services(request), body)
    return json_response(PoolRegistered(status="ok", name=row["name"], runtime_id=str(row["runtime_id"]),
                                        kind=row["kind"], runtime=_runtime_type(row)))


async def heartbeat(request: web.Request) -> web.Response:
    body = await read_json(request, PoolHeartbeat)
    name = body.name.strip()  # not blank: PoolHeartbeat says so
    svc = services(request)
    row = await store.heartbeat(svc.cluster_pool, name)
    if row is not None:
        return json_response(PoolRegistered(status="ok", name=name, runtime_id=str(row["runtime_id"])))
    if body.registration is not None:
        if body.registration.name is None:
            body.registration.name = name
        row, _ = await _upsert(svc, body.registration)
        return json_response(PoolRegistered(status="recreated", name=row["name"],
                                            runtime_id=str(row["runtime_id"]), kind=row["kind"],
                                            runtime=_runtime_type(row)))
    # NoETL workers look for detail.status == "unknown" and re-register.
    raise ApiError(404, f"worker pool {name!r} is not registered", "unknown",
                   headers={"Retry-After": str(HEARTBEAT_RETRY_AFTER_SECONDS)},
                   name=name, detail={"status": "unknown", "name": name})


async def deregister(request: web.Request) -> web.Response:
    body = await read_json(request, PoolDeregister)
    name = body.name.strip()  # not blank: PoolDeregister says so
    row = await store.deregister(services(request).cluster_pool, name)
    if row is None:
        raise not_found(f"worker pool {name!r} is not registered")
    return json_response(PoolDeregistered(status="ok", name=name, runtime_id=str(row["runtime_id"])))


async def list_pools(request: web.Request) -> web.Response:
    runtime, status = query_str(request, "runtime"), query_str(request, "status")
    rows = await store.list_pools(services(request).cluster_pool, runtime=runtime, status=status)
    items = [PoolItem(name=r["name"], runtime_id=str(r["runtime_id"]), runtime=_runtime_type(r),
                      status=r["status"], capacity=r["capacity"], labels=r["labels"], uri=r["uri"],
                      heartbeat=r["heartbeat"], created_at=r["created_at"], updated_at=r["updated_at"])
             for r in rows]
    return json_response(PoolList(items=items, count=len(items), runtime=runtime, status=status))
