"""The outside services keychain entries are fetched from: OAuth2 token endpoints, Google's token
endpoint (service-account JWT grant, for access and ID tokens) and GCP Secret Manager.

Every URL goes through `Endpoints.url`, so `NOETL_KEYCHAIN_ENDPOINTS` can send a provider to a
local stand-in (or a proxy) without touching the playbook."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .declarations import KeychainError

GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
SECRET_MANAGER_URL = "https://secretmanager.googleapis.com"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class ProviderError(KeychainError):
    """The provider answered with an error or could not be reached."""


class Endpoints:
    """Prefix rewrites for provider URLs, longest prefix first."""

    def __init__(self, rewrites: dict[str, str]) -> None:
        self._rewrites = sorted(rewrites.items(), key=lambda kv: -len(kv[0]))

    def url(self, url: str) -> str:
        for prefix, target in self._rewrites:
            if url.startswith(prefix):
                return target + url[len(prefix):]
        return url


async def _json(resp: aiohttp.ClientResponse, what: str) -> dict[str, Any]:
    text = await resp.text()
    if resp.status >= 300:
        # The body of a failed token request may echo what was sent; only the status is kept.
        raise ProviderError(f"{what} answered HTTP {resp.status}")
    try:
        body = json.loads(text)
    except ValueError:
        raise ProviderError(f"{what} answered HTTP {resp.status} with a body that is not JSON") from None
    if not isinstance(body, dict):
        raise ProviderError(f"{what} answered with a JSON {type(body).__name__}, not an object")
    return body


async def request(session: aiohttp.ClientSession, endpoints: Endpoints, what: str, method: str, url: str,
                  **kw: Any) -> dict[str, Any]:
    target = endpoints.url(url)
    try:
        async with session.request(method, target, **kw) as resp:
            return await _json(resp, what)
    except aiohttp.ClientError as exc:
        raise ProviderError(f"{what} at {target} could not be reached: {type(exc).__name__}") from None
    except TimeoutError:
        raise ProviderError(f"{what} at {target} did not answer in time") from None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def service_account_assertion(sa: dict[str, Any], claims: dict[str, Any], now: float) -> str:
    """A JWT signed with the service account's key (RS256), as Google's JWT-bearer grant wants."""
    try:
        key = serialization.load_pem_private_key(str(sa["private_key"]).encode(), password=None)
    except (KeyError, ValueError, TypeError):
        raise KeychainError("service account has no usable private_key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeychainError("service account private_key is not an RSA key")
    header = {"alg": "RS256", "typ": "JWT", **({"kid": sa["private_key_id"]} if sa.get("private_key_id") else {})}
    payload = {"iss": sa.get("client_email"), "aud": sa.get("token_uri") or GOOGLE_TOKEN_URL,
               "iat": int(now), "exp": int(now) + 3600, **claims}
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(payload).encode())}"
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


async def service_account_token(session: aiohttp.ClientSession, endpoints: Endpoints, sa: dict[str, Any], *,
                                audience: str | None = None) -> dict[str, Any]:
    """An ID token for `audience`, or else a cloud-platform access token."""
    if sa.get("type") != "service_account":
        raise KeychainError("service account info must have type service_account")
    claims = {"target_audience": audience} if audience else {"scope": CLOUD_PLATFORM}
    assertion = service_account_assertion(sa, claims, time.time())
    body = await request(session, endpoints, "Google token endpoint", "POST", sa.get("token_uri") or GOOGLE_TOKEN_URL,
                         data={"grant_type": JWT_GRANT, "assertion": assertion})
    field = "id_token" if audience else "access_token"
    if not body.get(field):
        raise ProviderError(f"Google token endpoint answered without {field}")
    return body


def service_account_info(data: dict[str, Any]) -> dict[str, Any] | None:
    """A credential's service account, nested (`service_account_info`) or the data itself."""
    nested = data.get("service_account_info")
    if isinstance(nested, dict):
        return nested
    if isinstance(nested, str):
        try:
            parsed = json.loads(nested)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return data if data.get("type") == "service_account" else None


async def google_access_token(session: aiohttp.ClientSession, endpoints: Endpoints, data: dict[str, Any]) -> str:
    """An access token from a credential's data: a stored `access_token`, a service account, or
    an authorized user's refresh token."""
    if data.get("access_token"):
        return str(data["access_token"])
    sa = service_account_info(data)
    if sa is not None:
        return str((await service_account_token(session, endpoints, sa))["access_token"])
    if data.get("refresh_token"):
        body = await request(session, endpoints, "Google token endpoint", "POST", data.get("token_uri") or GOOGLE_TOKEN_URL,
                             data={"grant_type": "refresh_token", "refresh_token": data["refresh_token"],
                                   "client_id": data.get("client_id", ""), "client_secret": data.get("client_secret", "")})
        if body.get("access_token"):
            return str(body["access_token"])
        raise ProviderError("Google token endpoint answered without access_token")
    raise KeychainError("credential has no access_token, service account or refresh_token")


async def gcp_secret(session: aiohttp.ClientSession, endpoints: Endpoints, access_token: str, path: str) -> Any:
    """One secret version's payload (JSON-decoded when it is JSON, as NoETL does)."""
    body = await request(session, endpoints, "GCP Secret Manager", "GET",
                         f"{SECRET_MANAGER_URL}/v1/{path.strip('/')}:access",
                         headers={"Authorization": f"Bearer {access_token}"})
    payload = (body.get("payload") or {}).get("data") if isinstance(body.get("payload"), dict) else None
    if not payload:
        raise ProviderError(f"GCP Secret Manager returned an empty payload for {path}")
    try:
        text = base64.b64decode(payload).decode("utf-8")
    except ValueError:
        raise ProviderError(f"GCP Secret Manager payload of {path} is not base64 UTF-8") from None
    try:
        return json.loads(text)
    except ValueError:
        return text
