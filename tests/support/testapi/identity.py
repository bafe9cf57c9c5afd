"""Stand-ins for the providers keychain entries are fetched from, shaped like the real ones:
an OAuth2 client_credentials token endpoint (Amadeus' path too), Google's token endpoint for a
service account of its own (JWT-bearer grant, RS256 checked; ID tokens for `target_audience`,
else access tokens) and GCP Secret Manager's `versions/*:access` (bearer must be a token issued
here). Tests seed secrets with `PUT /gcp-sm/_seed` and read the service account from
`GET /google/service-account`."""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

CLIENT_ID, CLIENT_SECRET = "test-client", "test-secret"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class Identity:
    """Issued tokens, seeded secrets and the service account's key, per app."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.serial = itertools.count(1)
        self.issued: set[str] = set()
        self.secrets: dict[str, str] = {}
        self.token_requests = 0

    def mint(self, prefix: str) -> str:
        token = f"{prefix}-{next(self.serial)}"
        self.issued.add(token)
        return token


IDENTITY = web.AppKey("identity", Identity)


def _b64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


async def oauth2_token(request: web.Request) -> web.Response:
    ident = request.app[IDENTITY]
    form = await request.post()
    ident.token_requests += 1
    if form.get("grant_type") != "client_credentials":
        return web.json_response({"error": "unsupported_grant_type"}, status=400)
    if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
        return web.json_response({"error": "invalid_client"}, status=401)
    expires_in = int(request.query.get("expires_in", "1799"))
    return web.json_response({"type": "amadeusOAuth2Token", "access_token": ident.mint("oauth"),
                              "token_type": "Bearer", "expires_in": expires_in, "state": "approved"})


async def service_account(request: web.Request) -> web.Response:
    ident = request.app[IDENTITY]
    pem = ident.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()).decode()
    base = f"{request.scheme}://{request.host}"
    return web.json_response({"type": "service_account", "project_id": "test-project", "private_key_id": "k1",
                              "private_key": pem, "client_email": "keychain-test@test-project.iam.gserviceaccount.com",
                              "client_id": "1", "token_uri": f"{base}/google/token"})


async def google_token(request: web.Request) -> web.Response:
    ident = request.app[IDENTITY]
    form = await request.post()
    if form.get("grant_type") != JWT_GRANT:
        return web.json_response({"error": "unsupported_grant_type"}, status=400)
    try:
        header, payload, signature = str(form.get("assertion", "")).split(".")
        ident.key.public_key().verify(_b64(signature), f"{header}.{payload}".encode(), padding.PKCS1v15(),
                                      hashes.SHA256())
        claims: dict[str, Any] = json.loads(_b64(payload))
    except (ValueError, InvalidSignature):
        return web.json_response({"error": "invalid_grant", "error_description": "bad assertion"}, status=400)
    if claims.get("target_audience"):
        return web.json_response({"id_token": ident.mint(f"idtoken:{claims['target_audience']}")})
    return web.json_response({"access_token": ident.mint("gcp"), "token_type": "Bearer", "expires_in": 3599})


async def seed_secrets(request: web.Request) -> web.Response:
    body = await request.json()
    request.app[IDENTITY].secrets.update({str(k): v if isinstance(v, str) else json.dumps(v) for k, v in body.items()})
    return web.json_response({"seeded": len(body)})


async def access_secret(request: web.Request) -> web.Response:
    ident = request.app[IDENTITY]
    path = request.match_info["path"]
    if not path.endswith(":access"):
        return web.json_response({"error": {"code": 404, "message": "unknown method"}}, status=404)
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer ") or auth[7:] not in ident.issued:
        return web.json_response({"error": {"code": 401, "status": "UNAUTHENTICATED"}}, status=401)
    name = path[: -len(":access")]
    value = ident.secrets.get(name)
    if value is None:
        return web.json_response({"error": {"code": 404, "status": "NOT_FOUND", "message": name}}, status=404)
    return web.json_response({"name": name, "payload": {"data": base64.b64encode(value.encode()).decode()}})


def add_routes(app: web.Application) -> None:
    app[IDENTITY] = Identity()
    app.router.add_post("/oauth2/token", oauth2_token)
    app.router.add_post("/v1/security/oauth2/token", oauth2_token)  # Amadeus' path
    app.router.add_get("/google/service-account", service_account)
    app.router.add_post("/google/token", google_token)
    app.router.add_put("/gcp-sm/_seed", seed_secrets)
    app.router.add_get("/gcp-sm/v1/{path:.*}", access_secret)
