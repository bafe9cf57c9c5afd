"""Where a keychain entry lives: its cache key (NoETL's format) and the associated data its
ciphertext is bound to."""

from __future__ import annotations

from noetl_common.errors import bad_request
from noetl_common.wire.keychain import SCOPES


def cache_key(name: str, catalog_id: int, scope_type: str, execution_id: int | None) -> str:
    """NoETL's key format, so entries written by either server are found by the other."""
    if scope_type not in SCOPES:
        raise bad_request(f"scope_type must be one of {', '.join(SCOPES)}, got {scope_type!r}")
    if scope_type == "global":
        return f"{name}:{catalog_id}:global"
    if execution_id is None:
        raise bad_request(f"execution_id is required for scope_type {scope_type!r}")
    if scope_type == "shared":
        return f"{name}:{catalog_id}:shared:{execution_id}"
    return f"{name}:{catalog_id}:{execution_id}"


def aad(key: str) -> bytes:
    return b"noetl.keychain:" + key.encode("utf-8")
