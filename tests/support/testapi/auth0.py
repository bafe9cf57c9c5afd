"""Auth0's token shapes, for the stand-in `/oauth/token` (identity.py): an access token is an RS256
JWT signed with the test API's key, issued by `https://<the host it was asked as>/` (so a playbook
that checks the issuer against its `auth0_domain` accepts it, directly or through the proxy), and
`/.well-known/jwks.json` publishes that key; `/userinfo` answers the claims of a bearer issued here."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

KID = "test-api-auth0"
LIFETIME = 86400


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_b64(n: int) -> str:
    return _b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


def user_claims(username: str) -> dict[str, Any]:
    """The same user always gets the same subject (Auth0's `auth0|<id>`), email and name."""
    local = username.split("@", 1)[0] or "user"
    return {"sub": f"auth0|{base64.b32encode(username.encode()).decode().rstrip('=').lower()[:24]}",
            "email": username, "name": local.replace(".", " ").title(), "email_verified": True}


def access_token(key: rsa.RSAPrivateKey, issuer_host: str, body: dict[str, Any]) -> str:
    now = int(time.time())
    username = str(body.get("username") or f"{body.get('client_id', 'client')}@clients")
    claims = {**user_claims(username), "iss": f"https://{issuer_host}/", "aud": body.get("audience") or "",
              "azp": body.get("client_id") or "", "scope": body.get("scope") or "", "iat": now, "exp": now + LIFETIME}
    header = {"alg": "RS256", "typ": "JWT", "kid": KID}
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


def jwks(key: rsa.RSAPrivateKey) -> dict[str, Any]:
    numbers = key.public_key().public_numbers()
    return {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": KID,
                      "n": _int_b64(numbers.n), "e": _int_b64(numbers.e)}]}


def claims_of(token: str) -> dict[str, Any] | None:
    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
