"""`POST /api/catalog/delete` and `/api/catalog/restore` bodies, shaped like NoETL's Rust server's."""

from __future__ import annotations

from typing import Annotated

import msgspec

from . import MAX_VERSION, NotBlank


class RetireRequest(msgspec.Struct, kw_only=True):
    path: NotBlank
    # One version; absent: every version of the path (no "latest" shorthand, as in NoETL: the
    # latest is what executions resolve to, so retiring it is spelled out).
    version: Annotated[int, msgspec.Meta(ge=1, le=MAX_VERSION)] | None = None


class RetiredEntry(msgspec.Struct):
    catalog_id: str
    version: int


class RetireResponse(msgspec.Struct, kw_only=True):
    status: str                  # "success"
    message: str
    path: str
    deleted: list[RetiredEntry]  # the versions archived (delete) or brought back (restore)
    count: int
