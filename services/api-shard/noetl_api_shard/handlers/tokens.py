"""POST /api/credentials/{name}/token: a bearer token minted from a stored credential, for the
`token(<credential>[, <audience>])` template function (NoETL's): a Google service account's access
token, or its ID token for an audience; a credential holding an `access_token` or a refresh token
works too. Trusted callers only (the worker fills the token in right before its tool runs); the
provider endpoints are the keychain's (NOETL_KEYCHAIN_ENDPOINTS rewrites apply)."""

from __future__ import annotations

from aiohttp import web

from noetl_common.errors import ApiError, json_response, not_found, read_json
from noetl_common.openapi import Op, route
from noetl_common.wire.keychain import MintedToken, TokenRequest

from ..keychain import processing as keychain
from ..keychain.declarations import KeychainError
from ..keychain.providers import ProviderError, google_access_token, service_account_info, service_account_token
from ..state import trusted_services
from ..store import credentials as credential_store


def register(app: web.Application) -> None:
    route(app, "POST", "/api/credentials/{name}/token", mint_token, Op(
        summary="A bearer token minted from a credential (trusted callers): what `token(name)` renders to",
        body=TokenRequest, ok=MintedToken, errors=(400, 403, 404, 422, 502)))


async def mint_token(request: web.Request) -> web.Response:
    svc = trusted_services(request, "a token minted from a credential")
    name = request.match_info["name"]
    body = await read_json(request, TokenRequest, allow_empty=True)
    where = f"token({name!r})"
    if await credential_store.get(svc.cluster_pool, name=name) is None:
        raise not_found(f"credential {name!r} not found")
    try:
        async with keychain.resolver_for(svc) as resolver:
            data = await resolver.credential(name, where)
            if body.audience:
                sa = service_account_info(data)
                if sa is None:
                    raise KeychainError(f"{where}: an ID token needs a service account credential")
                minted = await service_account_token(resolver.session, resolver.endpoints, sa, audience=body.audience)
                token = str(minted["id_token"])
            else:
                token = await google_access_token(resolver.session, resolver.endpoints, data)
    except ProviderError as exc:
        raise ApiError(502, f"{where}: {exc}", "token_provider_failed") from None
    except KeychainError as exc:  # its message names the credential already
        raise ApiError(422, str(exc) if where in str(exc) else f"{where}: {exc}", "validation_error") from None
    return json_response(MintedToken(token=token))
