"""Credential bodies (`/api/credentials`), shaped like NoETL's CredentialResponse."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Union

import msgspec

from . import NotBlank


class CredentialCreate(msgspec.Struct, kw_only=True):
    name: NotBlank
    type: str | None = None
    credential_type: str | None = None  # NoETL alias of `type`
    data: dict[str, Any]                # the secret fields
    meta: dict[str, Any] | None = None
    tags: Union[str, list[str], None] = None   # "a,b" or ["a", "b"]
    description: str | None = None


class CredentialResponse(msgspec.Struct):
    id: str
    name: str
    type: str
    created_at: datetime
    updated_at: datetime
    meta: dict[str, Any] | None = None
    tags: list[str] | None = None
    description: str | None = None
    # UNSET fields are left out of the JSON: present only with include_data=true.
    data: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class CredentialFilter(msgspec.Struct):
    type: str | None = None
    q: str | None = None


class CredentialList(msgspec.Struct):
    items: list[CredentialResponse]
    filter: CredentialFilter


class CredentialDeleted(msgspec.Struct):
    message: str
    id: str
