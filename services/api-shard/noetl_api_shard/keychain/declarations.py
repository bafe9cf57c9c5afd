"""Reading a playbook's `keychain:` entries and the timing rules around them (no I/O).

Kinds are NoETL's (its server's keychain processor): `secret_manager` (and `secrets`, the Rust
runtime's name for it) reads secrets from a provider, `oauth2` asks a token endpoint, `google_id_token`
signs for a Google ID token, `bearer` and `static` store rendered values, `credential` (and its
aliases) copies a stored credential. Values stay templates here; they are rendered at resolution.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

import msgspec

Kind = Literal["secret_manager", "oauth2", "google_id_token", "bearer", "static", "credential"]
KIND_ALIASES: dict[str, Kind] = {
    "secret_manager": "secret_manager", "secrets": "secret_manager", "oauth2": "oauth2",
    "google_id_token": "google_id_token", "bearer": "bearer", "static": "static",
    "credential": "credential", "credential_ref": "credential", "google_oauth": "credential",
    "google_service_account": "credential", "google": "credential"}
SCOPE_ALIASES = {"global": "global", "catalog": "global", "local": "local", "shared": "shared"}
# NoETL's default lifetimes when neither the entry nor the provider says: a day for entries
# shared across executions, an hour for an execution's own.
DEFAULT_TTL = {"global": 86400, "shared": 86400, "local": 3600}
# Kinds whose value can be fetched again, so `auto_renew` means something for them.
RENEWABLE: frozenset[Kind] = frozenset({"oauth2", "google_id_token", "secret_manager"})


class KeychainError(ValueError):
    """An entry cannot be resolved; the message names the entry and the field."""


class Declaration(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    kind: Kind
    kind_as_written: str
    scope: str = "global"
    auto_renew: bool = False
    ttl_seconds: int | None = None
    spec: dict[str, Any] = {}  # everything else, unrendered (endpoint, map, auth, ...)

    @property
    def credential_type(self) -> str:
        return "oauth2_client_credentials" if self.kind == "oauth2" else self.kind_as_written

    @property
    def cache_type(self) -> str:
        return "token" if self.kind in ("oauth2", "google_id_token", "bearer") else "secret"


def parse(section: Any) -> list[Declaration]:
    """The `keychain:` list of a playbook. Raises KeychainError naming `keychain[i].<field>`."""
    if section is None:
        return []
    if not isinstance(section, list):
        raise KeychainError(f"keychain must be a list of entries, got {type(section).__name__}")
    out: list[Declaration] = []
    seen: set[str] = set()
    for i, raw in enumerate(section):
        where = f"keychain[{i}]"
        if not isinstance(raw, dict):
            raise KeychainError(f"{where} must be a mapping, got {type(raw).__name__}")
        name = raw.get("name")
        if not isinstance(name, str) or not name.isidentifier():
            raise KeychainError(f"{where}.name must be an identifier, got {name!r}")
        if name in seen:
            raise KeychainError(f"{where}.name {name!r} is declared twice")
        seen.add(name)
        written = raw.get("kind") or raw.get("type")
        kind = KIND_ALIASES.get(written) if isinstance(written, str) else None
        if kind is None:
            raise KeychainError(f"{where}.kind must be one of {', '.join(sorted(KIND_ALIASES))}, got {written!r}")
        scope = SCOPE_ALIASES.get(str(raw.get("scope", "global")))
        if scope is None:
            raise KeychainError(f"{where}.scope must be global, local or shared, got {raw.get('scope')!r}")
        auto_renew = raw.get("auto_renew", False)
        if not isinstance(auto_renew, bool):
            raise KeychainError(f"{where}.auto_renew must be true or false, got {auto_renew!r}")
        ttl = raw.get("ttl_seconds")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0):
            raise KeychainError(f"{where}.ttl_seconds must be a positive integer, got {ttl!r}")
        spec = {k: v for k, v in raw.items()
                if k not in ("name", "kind", "type", "scope", "auto_renew", "ttl_seconds")}
        _check_spec(where, kind, spec)
        out.append(Declaration(name=name, kind=kind, kind_as_written=str(written), scope=scope,
                               auto_renew=auto_renew, ttl_seconds=ttl, spec=spec))
    return out


def _check_spec(where: str, kind: Kind, spec: dict[str, Any]) -> None:
    def need(field: str, types: tuple[type, ...] = (str,)) -> None:
        if not isinstance(spec.get(field), types) or not spec.get(field):
            raise KeychainError(f"{where}.{field} is required for kind {kind}")

    if kind == "secret_manager":
        need("auth")
        need("map", (dict,))
        provider = spec.get("provider", "gcp")
        if provider != "gcp":
            raise KeychainError(f"{where}.provider {provider!r} is not supported (gcp is)")
    elif kind == "oauth2":
        need("endpoint")
        for field in ("headers", "data", "json"):
            if spec.get(field) is not None and not isinstance(spec[field], dict):
                raise KeychainError(f"{where}.{field} must be a mapping")
    elif kind == "google_id_token":
        need("target_audience")
        has_secret, has_cred = bool(spec.get("service_account_secret")), bool(spec.get("service_account_credential"))
        if has_secret == has_cred:
            raise KeychainError(f"{where} needs exactly one of service_account_secret, service_account_credential")
        if has_secret:
            need("auth")
    elif kind == "bearer":
        need("token")
    elif kind == "static":
        need("map", (dict,))
    # credential: `ref` or `credential`, else the entry's own name (NoETL's fallback)


def expiry(decl: Declaration, value: dict[str, Any], now: datetime) -> datetime:
    """When a resolved value goes stale: the entry's `ttl_seconds`, else the provider's
    `expires_in`, else the scope's default."""
    if decl.ttl_seconds is not None:
        return now + timedelta(seconds=decl.ttl_seconds)
    expires_in = value.get("expires_in")
    if isinstance(expires_in, (int, float, str)) and not isinstance(expires_in, bool):
        try:
            seconds = float(expires_in)
        except ValueError:
            seconds = -1
        if seconds > 0:
            return now + timedelta(seconds=seconds)
    return now + timedelta(seconds=DEFAULT_TTL[decl.scope])


def renewal_due(expires_at: datetime | None, now: datetime, renew_before_seconds: float) -> bool:
    """An auto-renewed value is fetched again once it is expired or expires within the margin
    (NoETL's worker refreshes below 300 s left), so a step never starts with a dying token."""
    return expires_at is not None and (expires_at - now).total_seconds() < renew_before_seconds


def render_context(workload: dict[str, Any], resolved: dict[str, Any]) -> dict[str, Any]:
    """NoETL's scope for keychain templates: workload keys at the top and under `workload`, the
    entries resolved so far under `keychain`."""
    return {**workload, "workload": workload, "keychain": resolved}
