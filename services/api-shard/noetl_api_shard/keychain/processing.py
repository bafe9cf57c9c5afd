"""Resolving a playbook's keychain when an execution starts, and renewing an entry when it is read.

Entries are resolved in order (a later one may use `{{ keychain.<earlier>.<field> }}`), each is
stored in `noetl.keychain` encrypted under its cache key, and nothing of the values goes into the
execution's state or events: steps get them from the worker (`noetl_common.keychain_refs`). The
rendered declaration is kept as the entry's `renew_config` (encrypted too), so a renewal repeats the
same request without the workload it was rendered from."""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timezone
from typing import Any, AsyncIterator, cast

import aiohttp
import asyncpg

from noetl_common.crypto import DecryptionError, Encryptor
from noetl_common.dsl.templates import Renderer, TemplateError
from noetl_common.errors import ApiError, unprocessable

from ..handlers.credentials import _aad as credential_aad
from ..state import ShardServices
from ..store import credentials as credential_store
from ..store import keychain as keychain_store
from . import declarations as decl_mod
from .keys import aad, cache_key
from .declarations import RENEWABLE, Declaration, KeychainError
from .providers import (Endpoints, ProviderError, gcp_secret, google_access_token, request, service_account_info,
                        service_account_token)

log = logging.getLogger("noetl.api_shard.keychain")
TIMEOUT = aiohttp.ClientTimeout(total=30)


class Resolver:
    """What resolving needs: the cluster database (credentials, keychain), the key, the provider
    URL rewrites and an HTTP session."""

    def __init__(self, cluster_pool: asyncpg.Pool, encryptor: Encryptor, endpoints: Endpoints,
                 session: aiohttp.ClientSession) -> None:
        self.pool = cluster_pool
        self.encryptor = encryptor
        self.endpoints = endpoints
        self.session = session
        self.renderer = Renderer()

    async def credential(self, name: str, where: str) -> dict[str, Any]:
        """A stored credential's data (its type is not checked: the data's shape is what counts)."""
        row = await credential_store.get(self.pool, name=name)
        if row is None:
            raise KeychainError(f"{where}: credential {name!r} not found")
        try:
            data = self.encryptor.decrypt_json(row["data_encrypted"], credential_aad(row["name"]))
        except DecryptionError:
            raise KeychainError(f"{where}: credential {name!r} cannot be decrypted with the server's key") from None
        return data if isinstance(data, dict) else {"value": data}

    def render(self, decl: Declaration, context: dict[str, Any]) -> dict[str, Any]:
        try:
            return cast(dict[str, Any], self.renderer.render(decl.spec, context))
        except TemplateError as exc:
            raise KeychainError(f"keychain entry {decl.name!r}: {exc}") from None

    async def resolve(self, decl: Declaration, spec: dict[str, Any]) -> dict[str, Any]:
        """The value of one entry from its rendered spec."""
        where = f"keychain entry {decl.name!r}"
        if decl.kind == "bearer":
            return {"access_token": _required(spec, "token", where), "token_type": "Bearer"}
        if decl.kind == "static":
            return dict(spec["map"])
        if decl.kind == "credential":
            ref = spec.get("ref") or spec.get("credential") or decl.name
            data = await self.credential(str(ref), where)
            if not data:
                raise KeychainError(f"{where}: credential {ref!r} has no data")
            return data
        if decl.kind == "oauth2":
            return await self._oauth2(spec, where)
        if decl.kind == "secret_manager":
            token = await self._google_token_for(str(_required(spec, "auth", where)), where)
            return {str(key): await self._secret(token, str(path), where) for key, path in spec["map"].items()}
        return await self._id_token(spec, where)

    async def _oauth2(self, spec: dict[str, Any], where: str) -> dict[str, Any]:
        kw: dict[str, Any] = {"headers": {str(k): str(v) for k, v in (spec.get("headers") or {}).items()}}
        if spec.get("json") is not None:
            kw["json"] = spec["json"]
        else:
            kw["data"] = {str(k): "" if v is None else str(v) for k, v in (spec.get("data") or {}).items()}
        body = await request(self.session, self.endpoints, f"{where}: token endpoint",
                             str(spec.get("method") or "POST").upper(), str(_required(spec, "endpoint", where)), **kw)
        return body

    async def _google_token_for(self, auth: str, where: str) -> str:
        data = await self.credential(auth, where)
        try:
            return await google_access_token(self.session, self.endpoints, data)
        except ProviderError as exc:
            raise ProviderError(f"{where}: {exc}") from None
        except KeychainError as exc:
            raise KeychainError(f"{where}: auth credential {auth!r}: {exc}") from None

    async def _secret(self, token: str, path: str, where: str) -> Any:
        try:
            return await gcp_secret(self.session, self.endpoints, token, path)
        except KeychainError as exc:
            raise type(exc)(f"{where}: {exc}") from None

    async def _id_token(self, spec: dict[str, Any], where: str) -> dict[str, Any]:
        audience = str(_required(spec, "target_audience", where))
        if spec.get("service_account_credential"):
            name = str(spec["service_account_credential"])
            data = await self.credential(name, where)
            sa = service_account_info(data)
            if sa is None:
                raise KeychainError(f"{where}: credential {name!r} holds no service account "
                                    "(service_account_info or type service_account)")
        else:
            token = await self._google_token_for(str(_required(spec, "auth", where)), where)
            sa = await self._secret(token, str(spec["service_account_secret"]), where)
            if not isinstance(sa, dict):
                raise KeychainError(f"{where}: service_account_secret is not a service account JSON")
        try:
            body = await service_account_token(self.session, self.endpoints, sa, audience=audience)
        except KeychainError as exc:
            raise type(exc)(f"{where}: {exc}") from None
        return {"id_token": body["id_token"], "access_token": body["id_token"], "token_type": "Bearer",
                "audience": audience}

    async def store(self, decl: Declaration, spec: dict[str, Any], value: dict[str, Any], *, catalog_id: int,
                    execution_id: int, now: datetime) -> None:
        key = cache_key(decl.name, catalog_id, decl.scope, execution_id)
        renewable = decl.auto_renew and decl.kind in RENEWABLE
        renew = {"kind": decl.kind_as_written, **({"ttl_seconds": decl.ttl_seconds} if decl.ttl_seconds else {}),
                 **spec} if renewable else None
        expires_at = decl_mod.expiry(decl, value, now)
        await keychain_store.upsert(
            self.pool, cache_key=key, keychain_name=decl.name, catalog_id=catalog_id,
            credential_type=decl.credential_type, cache_type=decl.cache_type, scope_type=decl.scope,
            execution_id=None if decl.scope == "global" else execution_id, parent_execution_id=None,
            data_encrypted=self.encryptor.encrypt_json(value, aad(key)),
            renew_config_encrypted=None if renew is None else self.encryptor.encrypt_json(renew, aad(key)),
            auto_renew=renewable, expires_at=expires_at)


def _required(spec: dict[str, Any], field: str, where: str) -> Any:
    value = spec.get(field)
    if value in (None, ""):
        raise KeychainError(f"{where}: {field} rendered empty")
    return value


async def process(resolver: Resolver, section: Any, *, catalog_id: int, execution_id: int,
                  workload: dict[str, Any]) -> None:
    """Resolve and store every entry of a playbook's `keychain:`. Raises
    KeychainError (ProviderError when a provider failed) naming the entry; entries stored before
    the failure stay (global ones serve the next start; local ones name an execution that never
    started and are only dead rows)."""
    resolved: dict[str, Any] = {}
    for decl in decl_mod.parse(section):
        spec = resolver.render(decl, decl_mod.render_context(workload, resolved))
        value = await resolver.resolve(decl, spec)
        await resolver.store(decl, spec, value, catalog_id=catalog_id, execution_id=execution_id,
                             now=datetime.now(timezone.utc))
        resolved[decl.name] = value
        log.info("keychain entry %s (%s, %s) stored for execution %s", decl.name, decl.kind, decl.scope, execution_id)


def renewal_wanted(row: asyncpg.Record, renew_before_seconds: float, now: datetime) -> bool:
    return (row["auto_renew"] and row["renew_config_encrypted"] is not None
            and decl_mod.renewal_due(row["expires_at"], now, renew_before_seconds))


async def renew(resolver: Resolver, row: asyncpg.Record, now: datetime) -> bool:
    """Fetch an auto-renewed entry again; False when the renewal failed (the stored value is then
    served as it is, as NoETL does)."""
    key = row["cache_key"]
    try:
        config = resolver.encryptor.decrypt_json(row["renew_config_encrypted"], aad(key))
        if not isinstance(config, dict):
            raise KeychainError("renew_config is not a mapping")
        # An entry stored through the API in NoETL's shape ({endpoint, method, headers, data}) is an
        # OAuth2 request, which is how NoETL's worker renews it.
        kind = config.get("kind") or ("oauth2" if config.get("endpoint") else None)
        decl = decl_mod.parse([{**config, "kind": kind, "name": row["keychain_name"], "scope": row["scope_type"],
                                "auto_renew": True}])[0]
        value = await resolver.resolve(decl, decl.spec)
    except (KeychainError, DecryptionError) as exc:
        log.warning("keychain entry %s could not be renewed: %s", key, exc)
        return False
    await keychain_store.upsert(
        resolver.pool, cache_key=key, keychain_name=row["keychain_name"], catalog_id=row["catalog_id"],
        credential_type=row["credential_type"], cache_type=row["cache_type"], scope_type=row["scope_type"],
        execution_id=row["execution_id"], parent_execution_id=row["parent_execution_id"],
        data_encrypted=resolver.encryptor.encrypt_json(value, aad(key)),
        renew_config_encrypted=row["renew_config_encrypted"], auto_renew=True,
        expires_at=decl_mod.expiry(decl, value, now))
    log.info("keychain entry %s renewed", key)
    return True


@contextlib.asynccontextmanager
async def resolver_for(svc: ShardServices) -> AsyncIterator[Resolver]:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        yield Resolver(svc.cluster_pool, svc.encryptor, Endpoints(svc.settings.keychain_endpoints), http)


async def at_start(svc: ShardServices, playbook: Any, workload: dict[str, Any], *, catalog_id: int,
                   execution_id: int) -> None:
    """The keychain of a playbook about to start (its catalog payload), before anything is written:
    a declaration or template that cannot work is a 422 naming the entry, a provider that fails a
    502, and the execution does not start (NoETL logs and starts it with empty values)."""
    section = playbook.get("keychain") if isinstance(playbook, dict) else None
    if not section:
        return
    declared = playbook.get("workload")
    merged = {**(declared if isinstance(declared, dict) else {}), **workload}
    try:
        async with resolver_for(svc) as resolver:
            await process(resolver, section, catalog_id=catalog_id, execution_id=execution_id, workload=merged)
    except ProviderError as exc:
        raise ApiError(502, str(exc), "keychain_provider_failed") from None
    except KeychainError as exc:
        raise unprocessable(str(exc)) from None
