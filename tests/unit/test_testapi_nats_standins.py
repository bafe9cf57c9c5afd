"""The test API's stand-ins for the nats index: Auth0's token endpoint (an RS256 JWT the published
JWKS verifies), NoETL's gateway callbacks, and the paginated server's patient records."""

from __future__ import annotations

import base64
import json

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.support.testapi import build_app
from tests.support.testapi.patient_records import total_pages


@pytest.fixture
async def api():
    async with TestServer(build_app()) as srv, aiohttp.ClientSession(base_url=str(srv.make_url(""))) as session:
        yield session


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


async def test_auth0_access_token_is_a_jwt_the_published_key_verifies_with_the_callers_issuer(api):
    body = {"grant_type": "password", "username": "ada@example.com", "password": "pw", "client_id": "c",
            "client_secret": "test-secret", "audience": "https://tenant/me/"}
    async with api.post("/oauth/token", json=body, headers={"Host": "tenant.auth0.test"}) as r:
        token = (await r.json())["access_token"]
    header, payload, signature = token.split(".")
    claims = json.loads(_b64(payload))
    assert claims["iss"] == "https://tenant.auth0.test/" and claims["email"] == "ada@example.com"
    assert claims["sub"].startswith("auth0|") and claims["aud"] == "https://tenant/me/"
    async with api.get("/.well-known/jwks.json") as r:
        (jwk,) = (await r.json())["keys"]
    assert jwk["kid"] == json.loads(_b64(header))["kid"]
    key = rsa.RSAPublicNumbers(int.from_bytes(_b64(jwk["e"]), "big"), int.from_bytes(_b64(jwk["n"]), "big")).public_key()
    key.verify(_b64(signature), f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    async with api.get("/userinfo", headers={"Authorization": f"Bearer {token}"}) as r:
        assert (await r.json())["email"] == "ada@example.com"
    async with api.get("/userinfo", headers={"Authorization": "Bearer forged.token.here"}) as r:
        assert r.status == 401


async def test_gateway_callbacks_are_delivered_and_kept_per_request(api):
    async with api.post("/gateway/api/internal/callback", json={"request_id": "r1", "status": "success",
                                                                "data": {"valid": True}}) as r:
        assert (r.status, await r.json()) == (200, {"status": "delivered"})
    async with api.post("/gateway/api/internal/callback/async", json={"status": "COMPLETED"}) as r:
        assert r.status == 422 and "request_id" in (await r.json())["error"]
    async with api.get("/gateway/_callbacks/r1") as r:
        assert await r.json() == [{"path": "/gateway/api/internal/callback", "request_id": "r1", "status": "success",
                                   "data": {"valid": True}}]


async def test_patient_records_pages_end_in_a_404_and_bad_numbers_are_400s(api):
    pages = total_pages("P-0001")
    assert 2 <= pages <= 5
    async with api.get("/api/v1/patient-records", params={"patientId": "P-0001", "page": pages, "pageSize": 3,
                                                           "payload_kb": 3}) as r:
        body = await r.json()
    assert body["meta"] == {"patientId": "P-0001", "page": pages, "pageSize": 3, "totalPages": pages}
    assert len(body["entry"]) == 3 and len(json.dumps(body)) > 3 * 1024
    async with api.get("/api/v1/patient-records", params={"patientId": "P-0001", "page": pages + 1}) as r:
        assert r.status == 404
    async with api.get("/api/v1/patient-records", params={"patientId": "P-0001", "min_delay": "soon"}) as r:
        assert r.status == 400 and "min_delay" in (await r.json())["detail"]
    async with api.get("/api/v1/patient-records", params={"patientId": "P-0001", "rate_limit": 1}) as r:
        assert r.status == 200
    async with api.get("/api/v1/patient-records", params={"patientId": "P-0001", "rate_limit": 1}) as r:
        assert r.status == 429 and r.headers["Retry-After"]
