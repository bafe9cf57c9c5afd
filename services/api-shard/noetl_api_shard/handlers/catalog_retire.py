"""Retiring catalog entries, as NoETL's Rust server does: `POST /api/catalog/delete` archives a
path's versions (a flag, never a removal: executions on the shards name them) and
`POST /api/catalog/restore` brings them back. Both are idempotent and for trusted callers only
(noetl_common.trust), like decrypted secrets."""

from __future__ import annotations

import logging

from aiohttp import web

from noetl_common.errors import json_response, read_json
from noetl_common.openapi import Op, route
from noetl_common.wire.catalog_retire import RetiredEntry, RetireRequest, RetireResponse

from ..state import trusted_services
from ..store import catalog as store

log = logging.getLogger("noetl.api_shard.catalog")


def register(app: web.Application) -> None:
    route(app, "POST", "/api/catalog/delete", delete, Op(
        summary="Archive a catalog path's versions (or one); listing and by-path lookups skip them "
                "(trusted callers only)", body=RetireRequest, ok=RetireResponse, errors=(403, 422)))
    route(app, "POST", "/api/catalog/restore", restore, Op(
        summary="Bring archived versions of a catalog path back (trusted callers only)", body=RetireRequest,
        ok=RetireResponse, errors=(403, 422)))


async def _retire(request: web.Request, archive: bool) -> web.Response:
    what = "catalog delete" if archive else "catalog restore"
    svc = trusted_services(request, what)
    body = await read_json(request, RetireRequest)
    path = body.path.strip()
    async with svc.cluster_cache.changing(f"catalog:{path}"):
        rows = await store.set_archived(svc.cluster_pool, path, body.version, archive)
    changed = [RetiredEntry(catalog_id=str(r["catalog_id"]), version=r["version"]) for r in rows]
    if archive:
        message = (f"Archived {len(changed)} version(s) of catalog entry '{path}'." if changed
                   else f"No active entries for '{path}'; nothing archived.")
    else:
        message = (f"Restored {len(changed)} archived version(s) of '{path}'." if changed
                   else f"No archived entries for '{path}'; nothing restored.")
    log.info("%s %s (version %s): %s", what, path, body.version, len(changed))
    return json_response(RetireResponse(status="success", message=message, path=path, deleted=changed,
                                        count=len(changed)))


async def delete(request: web.Request) -> web.Response:
    return await _retire(request, archive=True)


async def restore(request: web.Request) -> web.Response:
    return await _retire(request, archive=False)
