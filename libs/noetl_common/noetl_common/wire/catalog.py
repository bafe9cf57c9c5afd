"""Catalog bodies (`/api/catalog/*`), shaped like NoETL's."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar

import msgspec

from . import Id, Version, any_of_required


class RegisterRequest(msgspec.Struct):
    content: Annotated[str, msgspec.Meta(min_length=1)]   # YAML text, or base64 of it (the CLI sends base64)
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
    __json_schema_extra__: ClassVar[dict[str, Any]] = any_of_required("catalog_id", "path")

    catalog_id: Id | None = None
    path: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    version: Version | None = None      # an int, a digit string, or "latest"


class UiField(msgspec.Struct):
    """One workload field of NoETL's ui_schema; `kind`: string|integer|number|boolean|object|array|null|enum."""
    name: str
    kind: str
    default: Any = None
    description: str | None = None
    secret: bool = False
    credential_glob: str | None = None
    options: list[Any] | None = None
    children: list[UiField] | None = None


class UiSchemaResponse(msgspec.Struct):
    """NoETL's inferred workload form (its mcp UiSchemaResponse), plus the entry's catalog_id."""
    path: str
    version: int
    kind: str
    fields: list[UiField]
    generated_at: datetime
    catalog_id: str
    title: str | None = None
    description_markdown: str | None = None
    exposed_in_ui: bool = False


class PlaybookContent(msgspec.Struct):
    """GET /api/catalog/playbook/content: what NoETL's web UI reads to draw a playbook's flow."""
    content: str
    path: str
    version: int
    catalog_id: str
