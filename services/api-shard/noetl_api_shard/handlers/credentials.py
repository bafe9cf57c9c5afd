"""/api/credentials: secrets stored AES-256-GCM-encrypted, bound to the credential name.

The plaintext `data` exists only in the request being handled and in an explicit
include_data=true response; it is never logged, stored, or echoed in an error.
"""

from __future__ import annotations

import logging

import asyncpg
from aiohttp import web

from noetl_common.crypto import DecryptionError
from noetl_common.errors import ApiError, json_response, not_found, read_json
from noetl_common.openapi import Op, Param, route
from noetl_common.wire.credentials import (
    CredentialCreate,
    CredentialDeleted,
    CredentialFilter,
    CredentialList,
    CredentialResponse,
)

from ..state import services, trusted_services
from ..store import credentials as store
from .params import query_bool, query_str

log = logging.getLogger("noetl.api_shard.credentials")

DEFAULT_TYPE = "generic"


def register(app: web.Application) -> None:
    route(app, "POST", "/api/credentials", create_credential, Op(
        summary="Create or replace a credential (by name)", body=CredentialCreate, ok=CredentialResponse,
        errors=(400, 422)))
    route(app, "GET", "/api/credentials", list_credentials, Op(
        summary="List credentials (never their data)", ok=CredentialList,
        query=(Param(name="type"), Param(name="q"))))
    route(app, "GET", "/api/credentials/{identifier}", get_credential, Op(
        summary="One credential, by id (digits) or name", ok=CredentialResponse, errors=(403, 404),
        description="include_data=true (the decrypted data) is for trusted callers only: the internal token, "
                    "or a direct caller in NOETL_TRUSTED_NETWORKS (through the router: its own peer).",
        query=(Param(name="include_data", type=bool), Param(name="catalog_id"), Param(name="execution_id"),
               Param(name="parent_execution_id"))))
    route(app, "DELETE", "/api/credentials/{identifier}", delete_credential, Op(
        summary="Delete a credential", ok=CredentialDeleted, errors=(404,)))


def _aad(name: str) -> bytes:
    # Binding the ciphertext to the name: a blob copied onto another credential will not open.
    return b"noetl.credential:" + name.encode("utf-8")


def _tags(value: str | list[str] | None) -> list[str] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    cleaned = [t.strip() for t in items if t and t.strip()]
    return cleaned or None


def to_response(row: asyncpg.Record, data: dict | None = None) -> CredentialResponse:
    response = CredentialResponse(
        id=str(row["id"]), name=row["name"], type=row["type"], created_at=row["created_at"],
        updated_at=row["updated_at"], meta=row["meta"], tags=list(row["tags"]) if row["tags"] else None,
        description=row["description"])
    if data is not None:
        response.data = data
    return response


async def create_credential(request: web.Request) -> web.Response:
    body = await read_json(request, CredentialCreate)
    name = body.name.strip()  # name (not blank) and data are required: CredentialCreate says so
    type_ = (body.type or body.credential_type or DEFAULT_TYPE).strip() or DEFAULT_TYPE
    svc = services(request)
    async with svc.cluster_cache.changing("credential:"):
        row = await store.upsert(
            svc.cluster_pool, new_id=svc.new_cluster_id(), name=name, type_=type_,
            data_encrypted=svc.encryptor.encrypt_json(body.data, _aad(name)), meta=body.meta,
            tags=_tags(body.tags), description=body.description)
    log.info("credential %s (%s) stored", name, type_)
    return json_response(to_response(row))


async def list_credentials(request: web.Request) -> web.Response:
    type_, q = query_str(request, "type"), query_str(request, "q")
    rows = await store.search(services(request).cluster_pool, type_=type_, q=q)
    return json_response(CredentialList(items=[to_response(r) for r in rows],
                                        filter=CredentialFilter(type=type_, q=q)))


def _lookup(identifier: str) -> dict:
    # NoETL rule: all digits means an id, anything else a name. ASCII digits: isdigit() alone also
    # takes '¹', which int() refuses (a 500, found by fuzzing).
    digits = identifier.isascii() and identifier.isdigit()
    return {"id_": int(identifier)} if digits and len(identifier) < 20 else {"name": identifier}


async def get_credential(request: web.Request) -> web.Response:
    identifier = request.match_info["identifier"]
    include_data = query_bool(request, "include_data")
    # Plaintext secrets go to trusted callers only: workers, NoETL's UI (noetl_common.trust).
    svc = trusted_services(request, "include_data=true") if include_data else services(request)
    row = await svc.cluster_cache.credential(svc.cluster_pool, **_lookup(identifier))
    if row is None:
        raise not_found(f"Credential not found: {identifier}")
    data = None
    if include_data:
        try:
            decrypted = svc.encryptor.decrypt_json(row["data_encrypted"], _aad(row["name"]))
        except DecryptionError:
            log.error("credential %s cannot be decrypted with the configured key", row["name"])
            raise ApiError(500, "credential data cannot be decrypted with the server's key",
                           "decryption_failed") from None
        data = decrypted if isinstance(decrypted, dict) else {"value": decrypted}
    return json_response(to_response(row, data))


async def delete_credential(request: web.Request) -> web.Response:
    identifier = request.match_info["identifier"]
    svc = services(request)
    async with svc.cluster_cache.changing("credential:"):
        deleted_id = await store.delete(svc.cluster_pool, **_lookup(identifier))
    if deleted_id is None:
        raise not_found(f"Credential not found: {identifier}")
    return json_response(CredentialDeleted(message="Credential deleted successfully", id=str(deleted_id)))
