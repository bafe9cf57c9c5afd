"""Keychain bodies (`/api/keychain/*`), shaped like NoETL's."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from . import IdLike


class KeychainSet(msgspec.Struct):
    token_data: dict[str, Any] | None = None
    credential_type: str | None = None
    cache_type: str = "token"           # token | secret
    scope_type: str = "global"          # global | local | shared
    execution_id: IdLike | None = None
    parent_execution_id: IdLike | None = None
    ttl_seconds: int | None = None
    expires_at: datetime | None = None
    auto_renew: bool = False
    renew_config: dict[str, Any] | None = None


class KeychainSetResponse(msgspec.Struct):
    status: str
    message: str
    keychain_name: str
    catalog_id: str
    cache_key: str
    auto_renew: bool
    expires_at: datetime | None = None
    ttl_seconds: int | None = None


class KeychainEntry(msgspec.Struct):
    status: str                          # success | not_found | expired
    keychain_name: str
    catalog_id: str
    cache_key: str
    auto_renew: bool = False
    expired: bool = False
    token_data: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    credential_type: str | None = None
    cache_type: str | None = None
    scope_type: str | None = None
    execution_id: str | None = None
    expires_at: datetime | None = None
    ttl_seconds: int | None = None
    accessed_at: datetime | None = None
    access_count: int | None = None
    renew_config: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class KeychainList(msgspec.Struct):
    status: str
    catalog_id: str
    entries: list[KeychainEntry]
    count: int


class KeychainDeleted(msgspec.Struct):
    status: str
    message: str
    keychain_name: str
    catalog_id: str
    cache_key: str
    deleted: bool
