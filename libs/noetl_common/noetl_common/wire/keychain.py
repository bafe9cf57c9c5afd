"""Keychain bodies (`/api/keychain/*`), shaped like NoETL's."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

import msgspec

from . import DATETIME_PATTERN, Id

MAX_TTL_SECONDS = 100 * 31536000
SCOPES = ("global", "local", "shared")
ScopeType = Literal["global", "local", "shared"]


class KeychainSet(msgspec.Struct, kw_only=True):
    # A local or shared entry belongs to an execution: execution_id is required with those scopes
    # (the handler's cache_key checks it).
    __json_schema_extra__: ClassVar[dict[str, Any]] = {
        "if": {"required": ["scope_type"], "properties": {"scope_type": {"enum": ["local", "shared"]}}},
        "then": {"required": ["execution_id"], "properties": {"execution_id": {"not": {"type": "null"}}}}}

    token_data: dict[str, Any]
    credential_type: str | None = None
    cache_type: Literal["token", "secret"] = "token"
    scope_type: ScopeType = "global"
    execution_id: Id | None = None
    parent_execution_id: Id | None = None
    # Past about 100 years an expiry overflowed the calendar (a 500): 'no expiry' is leaving both out.
    ttl_seconds: Annotated[int, msgspec.Meta(gt=0, le=MAX_TTL_SECONDS)] | None = None
    expires_at: Annotated[datetime, msgspec.Meta(extra_json_schema={"pattern": DATETIME_PATTERN})] | None = None
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


class TokenRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`POST /api/credentials/{name}/token`: NoETL's `token(name[, audience])` template function."""

    audience: str | None = None  # an ID token for this audience; none: an access token


class MintedToken(msgspec.Struct):
    token: str
    token_type: str = "Bearer"
