"""Bearer-token gate for /api/internal/*: constant-time compare; 403 when missing or wrong, 503
when the server has no token configured (internal routes are never open by accident)."""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

from .errors import ApiError, error_response

INTERNAL_PREFIX = "/api/internal/"


def bearer_matches(header: str | None, token: str) -> bool:
    if not header:
        return False
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())


def internal_auth_middleware(token: str | None) -> Any:
    @web.middleware
    async def gate(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith(INTERNAL_PREFIX):
            if not token:
                return error_response(ApiError(
                    503, "internal API disabled: NOETL_INTERNAL_API_TOKEN is not configured",
                    "internal_auth_unconfigured"))
            if not bearer_matches(request.headers.get("Authorization"), token):
                return error_response(ApiError(
                    403, "a valid 'Authorization: Bearer <token>' header is required", "forbidden"))
        return await handler(request)

    return gate
