"""Catalog bodies (`/api/catalog/*`), shaped like NoETL's."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from . import IdLike


class RegisterRequest(msgspec.Struct):
    content: str | None = None          # YAML text, or base64 of it (the CLI sends base64)
    resource_type: str = "Playbook"     # fallback when the document has no `kind:`


class RegisterResponse(msgspec.Struct):
    status: str
    message: str
    path: str
    version: int
    catalog_id: str
    kind: str


class ListRequest(msgspec.Struct):
    resource_type: str | None = None
    path: str | None = None
    all_versions: bool = False          # default: the latest version of each path
    include_content: bool = True
    limit: int = 1000


class CatalogEntry(msgspec.Struct):
    catalog_id: str
    path: str
    version: int
    kind: str
    content: str | None = None
    layout: Any = None
    payload: Any = None
    meta: Any = None
    created_at: datetime | None = None


class ListResponse(msgspec.Struct):
    entries: list[CatalogEntry]


class ResourceRequest(msgspec.Struct):
    catalog_id: IdLike | None = None
    path: str | None = None
    version: IdLike | None = None       # an int, a digit string, or "latest"


class UiField(msgspec.Struct):
    name: str
    type: str
    default: Any = None


class UiSchemaResponse(msgspec.Struct):
    path: str
    version: int
    catalog_id: str
    fields: list[UiField]
    schema: dict[str, Any]
    workload: dict[str, Any]
