"""Starting an execution from an execute request (NoETL §1.3.1): resolve the catalog entry,
validate, start optimistically. `POST /api/execute` and each item of `POST /api/execute/batch`."""

from __future__ import annotations

from typing import Any

from noetl_common.errors import bad_request, not_found, unprocessable
from noetl_common.ids import parse_id
from noetl_common.pools import valid_pool
from noetl_common.wire.execution import ExecuteRequest, ExecuteResponse

from ...keychain import processing as keychain
from ...state import ShardServices
from ...store import catalog as catalog_store
from . import engine_port as engine
from .orchestration import Orchestrator
from .ownership import require_placeable
from .txn import Fallback

EXECUTABLE_KINDS = {"playbook", "playbooks", "agent", "agents"}
MAX_VERSION = 2**31 - 1  # the catalog's version column is an integer


def _id(value: Any, field: str) -> int:
    try:
        return parse_id(value, field)
    except ValueError as exc:
        raise bad_request(str(exc)) from None


async def start_request(svc: ShardServices, orch: Orchestrator, body: ExecuteRequest) -> ExecuteResponse:
    """Raises ApiError (4xx, or 503 on a draining shard) naming what is wrong; nothing is written then."""
    require_placeable(svc)
    if body.resource_kind is not None and body.resource_kind.lower() not in EXECUTABLE_KINDS:
        raise unprocessable(f"Catalog kind '{body.resource_kind}' is not executable")
    if body.catalog_id is not None:
        row = await catalog_store.get_by_id(svc.cluster_pool, _id(body.catalog_id, "catalog_id"))
        label = f"catalog_id={body.catalog_id}"
    elif body.path:
        version = None
        if body.version not in (None, "", "latest"):
            version = _id(body.version, "version")
            if not 1 <= version <= MAX_VERSION:
                raise bad_request(f"version must be between 1 and {MAX_VERSION} or 'latest', got {body.version!r}")
        row = await svc.cluster_cache.catalog_by_path(svc.cluster_pool, body.path, version)
        label = body.path + (f" version {version}" if version else "")
    else:
        raise unprocessable("either path or catalog_id is required")
    if row is None:
        raise not_found(f"Executable catalog entry not found: {label}")
    if (row["kind"] or "").lower() not in EXECUTABLE_KINDS:
        raise unprocessable(f"Catalog kind '{row['kind']}' is not executable")
    workload = {**(body.workload or {}), **(body.payload or {})}
    parent = _id(body.parent_execution_id, "parent_execution_id") if body.parent_execution_id is not None else None
    if body.execution_pool is not None and not valid_pool(body.execution_pool):
        raise unprocessable(f"execution_pool must be letters, digits, '-' or '_' (one subject token), "
                            f"got {body.execution_pool!r}")
    # The keychain is resolved before the start is written, so the first command finds it stored.
    execution_id = svc.mint_owned_id()
    await keychain.at_start(svc, row["payload"], workload, catalog_id=row["catalog_id"], execution_id=execution_id)
    try:
        _, outcome = await _start(orch, row["catalog_id"], workload, parent, body.execution_pool, execution_id)
    except engine.PlaybookError as exc:
        raise unprocessable(f"playbook {row['path']} cannot run: {exc}") from None
    return ExecuteResponse(execution_id=str(execution_id), status="started", commands_generated=outcome.commands,
                           path=row["path"], catalog_id=str(row["catalog_id"]))


async def _start(orch: Orchestrator, catalog_id: int, workload: dict[str, Any], parent: int | None,
                 pool: str | None, execution_id: int) -> tuple[int, Any]:
    """A new execution touches nothing existing: optimistic (one statement), with the locked
    path kept for the rare case it falls back."""
    try:
        async with orch.optimistic(None) as txn:
            return await orch.start(txn, catalog_id=catalog_id, workload=workload, parent_execution_id=parent,
                                    execution_pool=pool, execution_id=execution_id)
    except Fallback:
        pass
    async with orch.transaction() as txn:
        return await orch.start(txn, catalog_id=catalog_id, workload=workload, parent_execution_id=parent,
                                execution_pool=pool, execution_id=execution_id)
