"""/api/catalog/*: register YAML resources as new versions, list, fetch, UI schema."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

import asyncpg
from aiohttp import web

from noetl_common.errors import bad_request, json_response, not_found, read_json, unprocessable
from noetl_common.openapi import Op, Param, route
from noetl_common.wire import VersionParam
from noetl_common.wire.catalog import (
    CatalogEntry,
    ListRequest,
    ListResponse,
    PlaybookContent,
    RegisterRequest,
    RegisterResponse,
    ResourceRequest,
    UiSchemaResponse,
)

from ..catalog_document import DocumentError, build_document
from ..state import services
from ..store import catalog as store
from ..ui_form import workload_form
from .params import to_id

log = logging.getLogger("noetl.api_shard.catalog")

MAX_LIST_LIMIT = 10_000
OFFLOAD_PARSE_BYTES = 64 * 1024


def register(app: web.Application) -> None:
    route(app, "POST", "/api/catalog/register", register_resource, Op(
        summary="Register a YAML resource as a new version", body=RegisterRequest, ok=RegisterResponse,
        errors=(400, 422)))
    route(app, "POST", "/api/catalog/list", list_resources, Op(
        summary="List catalog entries", body=ListRequest, body_required=False, ok=ListResponse, errors=(422,)))
    route(app, "POST", "/api/catalog/resource", get_resource, Op(
        summary="One catalog entry, by catalog_id or path (+ version)", body=ResourceRequest, ok=CatalogEntry,
        errors=(400, 404)))
    # The path itself may contain slashes, so match the whole tail up to /ui_schema.
    route(app, "GET", r"/api/catalog/{path:.+}/ui_schema", ui_schema, Op(
        summary="A form inferred from a playbook's workload", ok=UiSchemaResponse,
        query=(Param(name="version", type=VersionParam, description="default: the latest"),), errors=(400, 404)))
    # NoETL's web UI reads a playbook's YAML here to draw its flow (no NoETL server serves it).
    route(app, "GET", "/api/catalog/playbook/content", playbook_content, Op(
        summary="A catalog entry's YAML, by playbook_id (a catalog_id, or a path for its latest version)",
        ok=PlaybookContent, query=(Param(name="playbook_id", required=True),), errors=(400, 404)))


def entry_from_row(row: asyncpg.Record) -> CatalogEntry:
    return CatalogEntry(catalog_id=str(row["catalog_id"]), path=row["path"], version=row["version"],
                        kind=row["kind"], content=row["content"], layout=row["layout"],
                        payload=row["payload"], meta=_meta(row), created_at=row["created_at"])


def _meta(row: asyncpg.Record) -> dict:
    """NoETL stamps `registered_at` into meta at registration (its UI shows it as "Updated");
    here it is the row's created_at, so entries registered before this change carry it too."""
    meta = dict(row["meta"]) if isinstance(row["meta"], dict) else {}
    if row["created_at"] is not None:
        meta.setdefault("registered_at", row["created_at"].isoformat())
    return meta


async def register_resource(request: web.Request) -> web.Response:
    body = await read_json(request, RegisterRequest)  # content: required and not empty (the Struct's)
    try:
        if len(body.content) > OFFLOAD_PARSE_BYTES:  # keep the event loop free while parsing big YAML
            doc = await asyncio.to_thread(build_document, body.content, body.resource_type)
        else:
            doc = build_document(body.content, body.resource_type)
    except DocumentError as exc:
        raise unprocessable(f"register_resource: {exc}") from None
    svc = services(request)
    meta = {"implicit_end": True} if doc.implicit_end else {}
    async with svc.cluster_cache.changing(f"catalog:{doc.path}"):
        row = await store.insert_next_version(
            svc.cluster_pool, catalog_id=svc.new_cluster_id(), path=doc.path, kind=doc.kind,
            content=doc.text, payload=doc.document, meta=meta)
    log.info("registered %s %s version %s", doc.kind, doc.path, row["version"])
    return json_response(RegisterResponse(
        status="success", message=f"Resource '{doc.path}' version '{row['version']}' registered.",
        path=doc.path, version=row["version"], catalog_id=str(row["catalog_id"]), kind=doc.kind))


async def list_resources(request: web.Request) -> web.Response:
    body = await read_json(request, ListRequest, allow_empty=True)
    if not 1 <= body.limit <= MAX_LIST_LIMIT:
        raise unprocessable(f"limit must be within 1..{MAX_LIST_LIMIT}, got {body.limit}")
    rows = await store.list_entries(
        services(request).cluster_pool, kind=body.resource_type or None, path=body.path or None,
        all_versions=body.all_versions, include_content=body.include_content, limit=body.limit)
    return json_response(ListResponse(entries=[entry_from_row(r) for r in rows]))


async def get_resource(request: web.Request) -> web.Response:
    body = await read_json(request, ResourceRequest)
    pool = services(request).cluster_pool
    if body.catalog_id is not None:
        row = await store.get_by_id(pool, to_id(body.catalog_id, "catalog_id"))
    elif body.path:
        row = await store.get_by_path(pool, body.path.strip("/"), _version(body.version))
    else:
        raise bad_request("catalog_id or path is required")
    if row is None:
        raise not_found("Catalog entry not found")
    return json_response(entry_from_row(row))


MAX_VERSION = 2**31 - 1  # the catalog's version column is an integer


def _version(value: int | str | None) -> int | None:
    """None and "latest" mean the newest version."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "latest")):
        return None
    version = to_id(value, "version")
    if not 1 <= version <= MAX_VERSION:
        raise bad_request(f"version must be between 1 and {MAX_VERSION} or 'latest', got {value!r}")
    return version


async def ui_schema(request: web.Request) -> web.Response:
    """NoETL's inferred workload form (ui_form) for one version, the latest by default."""
    path = request.match_info["path"].strip("/")
    row = await store.get_by_path(services(request).cluster_pool, path, _version(request.query.get("version")))
    if row is None:
        raise not_found(f"Catalog entry not found: {path}")
    document = row["payload"] if isinstance(row["payload"], dict) else {}
    raw_metadata = document.get("metadata")
    metadata: dict = raw_metadata if isinstance(raw_metadata, dict) else {}
    title, description = metadata.get("name"), metadata.get("description")
    return json_response(UiSchemaResponse(
        path=row["path"], version=row["version"], kind=str(row["kind"]).lower(), catalog_id=str(row["catalog_id"]),
        fields=workload_form(document, row["content"] or ""), generated_at=datetime.now(timezone.utc),
        title=title if isinstance(title, str) else None,
        description_markdown=description if isinstance(description, str) else None,
        exposed_in_ui=metadata.get("exposed_in_ui") is True))


async def playbook_content(request: web.Request) -> web.Response:
    playbook_id = (request.query.get("playbook_id") or "").strip().strip("/")
    if not playbook_id:
        raise bad_request("query parameter playbook_id is required (a catalog_id or a path)")
    pool = services(request).cluster_pool
    if playbook_id.isascii() and playbook_id.isdigit():
        row = await store.get_by_id(pool, to_id(playbook_id, "playbook_id"))
    else:
        row = await store.get_by_path(pool, playbook_id, None)
    if row is None:
        raise not_found(f"Catalog entry not found: {playbook_id}")
    return json_response(PlaybookContent(content=row["content"] or "", path=row["path"], version=row["version"],
                                         catalog_id=str(row["catalog_id"])))
