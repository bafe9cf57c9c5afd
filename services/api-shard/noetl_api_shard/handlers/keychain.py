"""/api/keychain/*: cached tokens and secrets per catalog entry, encrypted like credentials."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any, cast

import asyncpg
from aiohttp import web

from noetl_common.crypto import DecryptionError, Encryptor
from noetl_common.errors import ApiError, json_response, not_found, read_json
from noetl_common.openapi import IdParam, Op, Param, route
from noetl_common.wire.keychain import (
    ScopeType,
    KeychainDeleted,
    KeychainEntry,
    KeychainList,
    KeychainSet,
    KeychainSetResponse,
)

from ..state import services, trusted_services
from ..keychain import processing as keychain
from ..keychain.keys import aad, cache_key
from ..store import keychain as store
from .params import path_id, query_id, query_str, to_id

log = logging.getLogger("noetl.api_shard.keychain")

KEY_QUERY = (Param(name="scope_type", type=ScopeType, description="default global"),
             Param(name="execution_id", type=IdParam, description="required with scope_type local or shared"))


def register(app: web.Application) -> None:
    # Registered before the two-segment routes so "catalog/<id>" is not read as a keychain name.
    route(app, "GET", "/api/keychain/catalog/{catalog_id}", list_entries, Op(
        summary="A playbook's keychain entries (never their values)", ok=KeychainList, errors=(400,)))
    route(app, "GET", "/api/keychain/{catalog_id}/{keychain_name}", get_entry, Op(
        summary="One keychain entry with its values, for trusted callers (a miss is 200 with status not_found, "
                "as NoETL)", ok=KeychainEntry, query=KEY_QUERY, errors=(400, 403)))
    route(app, "POST", "/api/keychain/{catalog_id}/{keychain_name}", set_entry, Op(
        summary="Store a keychain entry (trusted callers)", body=KeychainSet, ok=KeychainSetResponse,
        errors=(400, 403, 422)))
    route(app, "DELETE", "/api/keychain/{catalog_id}/{keychain_name}", delete_entry, Op(
        summary="Delete a keychain entry (trusted callers)", ok=KeychainDeleted, query=KEY_QUERY,
        errors=(400, 403, 404)))


def _ttl_left(expires_at: datetime | None, now: datetime) -> int | None:
    return None if expires_at is None else max(0, int((expires_at - now).total_seconds()))


def _entry(row: asyncpg.Record, encryptor: Encryptor | None, now: datetime) -> KeychainEntry:
    """One row as NoETL shows it; with an encryptor the values are decrypted (unless expired)."""
    expired = row["expires_at"] is not None and row["expires_at"] <= now
    entry = KeychainEntry(
        status="expired" if expired else "success", keychain_name=row["keychain_name"],
        catalog_id=str(row["catalog_id"]), cache_key=row["cache_key"], auto_renew=row["auto_renew"],
        expired=expired, credential_type=row["credential_type"], cache_type=row["cache_type"],
        scope_type=row["scope_type"],
        execution_id=None if row["execution_id"] is None else str(row["execution_id"]),
        expires_at=row["expires_at"], ttl_seconds=_ttl_left(row["expires_at"], now),
        accessed_at=row["accessed_at"], access_count=row["access_count"])
    if encryptor is not None and not expired:
        key = row["cache_key"]
        try:
            entry.token_data = cast(dict[str, Any], encryptor.decrypt_json(row["data_encrypted"], aad(key)))
            if row["renew_config_encrypted"] is not None:
                entry.renew_config = cast(dict[str, Any],
                                          encryptor.decrypt_json(row["renew_config_encrypted"], aad(key)))
        except DecryptionError:
            log.error("keychain entry %s cannot be decrypted with the configured key", key)
            raise ApiError(500, "keychain data cannot be decrypted with the server's key",
                           "decryption_failed") from None
    return entry


def _expiry(body: KeychainSet, now: datetime) -> datetime | None:
    if body.ttl_seconds is not None:  # > 0: KeychainSet says so
        return now + timedelta(seconds=body.ttl_seconds)
    if body.expires_at is not None:
        expires = body.expires_at if body.expires_at.tzinfo else body.expires_at.replace(tzinfo=timezone.utc)
        return expires
    return None


async def set_entry(request: web.Request) -> web.Response:
    trusted_services(request, "storing a keychain entry")
    catalog_id = path_id(request, "catalog_id")
    name = request.match_info["keychain_name"]
    body = await read_json(request, KeychainSet)  # token_data required, cache_type and scope_type known ones
    execution_id = None if body.execution_id is None else to_id(body.execution_id, "execution_id")
    parent_id = None if body.parent_execution_id is None else to_id(body.parent_execution_id, "parent_execution_id")
    key = cache_key(name, catalog_id, body.scope_type, execution_id)
    now = datetime.now(timezone.utc)
    expires_at = _expiry(body, now)
    svc = services(request)
    await store.upsert(
        svc.cluster_pool, cache_key=key, keychain_name=name, catalog_id=catalog_id,
        credential_type=body.credential_type, cache_type=body.cache_type, scope_type=body.scope_type,
        execution_id=execution_id, parent_execution_id=parent_id,
        data_encrypted=svc.encryptor.encrypt_json(body.token_data, aad(key)),
        renew_config_encrypted=(None if body.renew_config is None
                                else svc.encryptor.encrypt_json(body.renew_config, aad(key))),
        auto_renew=body.auto_renew, expires_at=expires_at)
    return json_response(KeychainSetResponse(
        status="success", message=f"Keychain entry '{name}' stored", keychain_name=name,
        catalog_id=str(catalog_id), cache_key=key, auto_renew=body.auto_renew, expires_at=expires_at,
        ttl_seconds=_ttl_left(expires_at, now)))


def _key_from_query(request: web.Request) -> tuple[int, str, str]:
    catalog_id = path_id(request, "catalog_id")
    name = request.match_info["keychain_name"]
    scope = query_str(request, "scope_type") or "global"
    return catalog_id, name, cache_key(name, catalog_id, scope, query_id(request, "execution_id"))


async def get_entry(request: web.Request) -> web.Response:
    catalog_id, name, key = _key_from_query(request)
    svc = trusted_services(request, "a keychain entry's values")
    row = await store.touch(svc.cluster_pool, key)
    now = datetime.now(timezone.utc)
    if row is not None and keychain.renewal_wanted(row, svc.settings.keychain_renew_before_seconds, now):
        # auto_renew: a value about to expire is fetched again before it is served, so every
        # worker (ours or NoETL's) reading it gets a live token.
        async with keychain.resolver_for(svc) as resolver:
            if await keychain.renew(resolver, row, now):
                row = await store.touch(svc.cluster_pool, key)
    if row is None:
        # NoETL answers a miss with 200 and status "not_found"; workers branch on that field.
        return json_response(KeychainEntry(status="not_found", keychain_name=name,
                                           catalog_id=str(catalog_id), cache_key=key))
    return json_response(_entry(row, svc.encryptor, datetime.now(timezone.utc)))


async def list_entries(request: web.Request) -> web.Response:
    catalog_id = path_id(request, "catalog_id")
    rows = await store.list_for_catalog(services(request).cluster_pool, catalog_id)
    now = datetime.now(timezone.utc)
    entries = [_entry(r, None, now) for r in rows]  # listing never returns secret values
    return json_response(KeychainList(status="success", catalog_id=str(catalog_id), entries=entries,
                                      count=len(entries)))


async def delete_entry(request: web.Request) -> web.Response:
    svc = trusted_services(request, "deleting a keychain entry")
    catalog_id, name, key = _key_from_query(request)
    if not await store.delete(svc.cluster_pool, key):
        raise not_found(f"Keychain entry not found: {key}")
    return json_response(KeychainDeleted(status="success", message=f"Keychain entry '{name}' deleted",
                                         keychain_name=name, catalog_id=str(catalog_id), cache_key=key,
                                         deleted=True))
