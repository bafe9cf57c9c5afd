"""Stand-ins for the providers keychain entries are fetched from, shaped like the real ones:
an OAuth2 client_credentials token endpoint (Amadeus' path too), Google's token endpoint for a
service account of its own (JWT-bearer grant, RS256 checked; for `target_audience` an ID token,
a JWT with Google's claims signed by this server, else an access token), GCP Secret Manager's
`versions/*:access` (bearer must be a token issued here) and a Cloud Run-like service under
`/cloudrun/` that answers only a bearer ID token issued here for its own URL; and, for the
Amadeus/OpenAI smoke playbook, `/openai/v1/models` (key OPENAI_KEY) and Amadeus' airport lookup. Tests seed secrets
with `PUT /gcp-sm/_seed` and read the service account from `GET /google/service-account`."""

from __future__ import annotations

import base64
import itertools
import json
import time
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from . import auth0

CLIENT_ID, CLIENT_SECRET = "test-client", "test-secret"
OPENAI_KEY = "sk-stand-in"  # the API key /openai/v1/models accepts
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


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


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


async def auth0_token(request: web.Request) -> web.Response:
    """Auth0's `/oauth/token` (JSON body; the password grant NoETL's auth0 playbook uses): the
    client secret must be the test client's."""
    ident = request.app[IDENTITY]
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": "invalid_request"}, status=400)
    if not isinstance(body, dict) or body.get("grant_type") not in ("password", "client_credentials"):
        return web.json_response({"error": "unsupported_grant_type"}, status=400)
    if body.get("client_secret") != CLIENT_SECRET:
        return web.json_response({"error": "access_denied", "error_description": "Unauthorized"}, status=401)
    if body["grant_type"] == "password" and not (body.get("username") and body.get("password")):
        return web.json_response({"error": "invalid_grant"}, status=403)
    token = auth0.access_token(ident.key, request.host, body)
    ident.issued.add(token)
    return web.json_response({"access_token": token, "token_type": "Bearer", "expires_in": auth0.LIFETIME,
                              "scope": body.get("scope", "")})


async def auth0_jwks(request: web.Request) -> web.Response:
    return web.json_response(auth0.jwks(request.app[IDENTITY].key))


async def auth0_userinfo(request: web.Request) -> web.Response:
    """Auth0's `/userinfo`: the profile claims of a bearer access token issued here."""
    auth = request.headers.get("Authorization", "")
    token = auth[7:] if auth.startswith("Bearer ") else ""
    claims = auth0.claims_of(token) if token in request.app[IDENTITY].issued else None
    if claims is None:
        return web.json_response({"error": "invalid_token"}, status=401)
    return web.json_response({k: claims[k] for k in ("sub", "email", "name", "email_verified") if k in claims})


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
        return web.json_response({"id_token": _id_token(ident, claims)})
    return web.json_response({"access_token": ident.mint("gcp"), "token_type": "Bearer", "expires_in": 3599})


def _id_token(ident: Identity, assertion: dict[str, Any]) -> str:
    now = int(time.time())
    claims = {"aud": assertion["target_audience"], "iss": "https://accounts.google.com",
              "email": assertion.get("iss"), "sub": "1", "iat": now, "exp": now + 3600, "n": next(ident.serial)}
    signing_input = f"{_b64url(json.dumps({'alg': 'RS256', 'typ': 'JWT'}).encode())}.{_b64url(json.dumps(claims).encode())}"
    signature = ident.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    token = f"{signing_input}.{_b64url(signature)}"
    ident.issued.add(token)
    return token


async def cloud_run(request: web.Request) -> web.Response:
    """A service behind Google's IAM: the bearer must be an ID token from here whose audience is
    this service's URL (`<base>/cloudrun`)."""
    ident = request.app[IDENTITY]
    auth = request.headers.get("Authorization", "")
    token = auth[7:] if auth.startswith("Bearer ") else ""
    if token not in ident.issued or token.count(".") != 2:
        return web.json_response({"error": "unauthenticated"}, status=401)
    audience = json.loads(_b64(token.split(".")[1])).get("aud")
    if audience != f"{request.scheme}://{request.host}/cloudrun":
        return web.json_response({"error": f"token audience {audience!r} is not this service"}, status=403)
    return web.json_response({"data": [{"id": 1, "path": request.match_info["tail"]}], "page": 1})


async def openai_models(request: web.Request) -> web.Response:
    if request.headers.get("Authorization") != f"Bearer {OPENAI_KEY}":
        return web.json_response({"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}},
                                 status=401)
    return web.json_response({"object": "list", "data": [{"id": "gpt-stand-in", "object": "model"}]})


async def amadeus_locations(request: web.Request) -> web.Response:
    """Amadeus' reference data, behind a bearer from the OAuth2 endpoint above."""
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer oauth-") or auth[7:] not in request.app[IDENTITY].issued:
        return web.json_response({"errors": [{"status": 401, "title": "Invalid access token"}]}, status=401)
    keyword = request.query.get("keyword", "")
    return web.json_response({"meta": {"count": 1}, "data": [{"type": "location", "subType": "AIRPORT",
                                                              "iataCode": keyword.upper()[:3]}]})


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
    app.router.add_post("/oauth/token", auth0_token)
    app.router.add_get("/.well-known/jwks.json", auth0_jwks)
    app.router.add_get("/userinfo", auth0_userinfo)
    app.router.add_get("/google/service-account", service_account)
    app.router.add_post("/google/token", google_token)
    app.router.add_put("/gcp-sm/_seed", seed_secrets)
    app.router.add_get("/gcp-sm/v1/{path:.*}", access_secret)
    app.router.add_route("*", "/cloudrun/{tail:.*}", cloud_run)
    app.router.add_get("/openai/v1/models", openai_models)
    app.router.add_get("/v1/reference-data/locations", amadeus_locations)
