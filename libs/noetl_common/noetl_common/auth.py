"""Bearer-token gates, all with a constant-time compare:
- /api/internal/*: the internal token; 403 when missing or wrong, 503 when the server has no token
  configured (internal routes are never open by accident);
- decrypted secrets, SQL and the like: the internal token or a trusted network (`noetl_common.trust`);
- optionally every public route (`public_auth_middleware`, NOETL_API_TOKEN on the router): the
  API token or the internal token; health, readiness and metrics stay open for probes, and the
  API's description (/openapi.json, /docs) for people and tools (it holds no data)."""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from .errors import ApiError, error_response

INTERNAL_PREFIX = "/api/internal/"


def bearer_matches(header: str | None, token: str) -> bool:
    if not header:
        return False
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())


OPEN_PATHS = frozenset({"/health", "/healthz", "/readyz", "/metrics", "/api/health", "/api/health/ready"})
DOC_PATHS = frozenset({"/openapi.json", "/docs"})
DOC_PREFIX = "/docs/static/"


def needs_api_token(path: str) -> bool:
    """Whether NOETL_API_TOKEN, when set, gates this path (internal routes have their own gate)."""
    return not (path in OPEN_PATHS or path in DOC_PATHS or path.startswith((INTERNAL_PREFIX, DOC_PREFIX)))


def require_internal(request: web.Request, token: str | None, what: str = "internal API") -> None:
    """Raise unless the request carries the internal bearer token."""
    if not token:
        raise ApiError(503, f"{what} disabled: NOETL_INTERNAL_API_TOKEN is not configured",
                       "internal_auth_unconfigured")
    if not bearer_matches(request.headers.get("Authorization"), token):
        raise ApiError(403, f"{what} requires a valid 'Authorization: Bearer <token>' header", "forbidden")


def internal_auth_middleware(token: str | None) -> Any:
    @web.middleware
    async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(INTERNAL_PREFIX):
            try:
                require_internal(request, token)
            except ApiError as exc:
                return error_response(exc)
        return await handler(request)

    return gate


def public_auth_middleware(api_token: str, internal_token: str | None) -> Any:
    """Every route outside /api/internal/ and the probes' paths needs a bearer token: the API
    token, or the internal one (workers carry that, and it already opens more)."""
    tokens = [t for t in (api_token, internal_token) if t]

    @web.middleware
    async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if needs_api_token(request.path):
            header = request.headers.get("Authorization")
            if not any(bearer_matches(header, t) for t in tokens):
                return error_response(ApiError(
                    401, "a valid 'Authorization: Bearer <token>' header is required", "unauthorized",
                    headers={"WWW-Authenticate": "Bearer"}))
        return await handler(request)

    return gate
