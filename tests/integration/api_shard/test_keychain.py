"""Keychain set/get/list/delete with NoETL cache keys; values encrypted at rest."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from .conftest import INTERNAL_TOKEN

TOKEN = {"access_token": "tok-abc-123-secret", "token_type": "Bearer"}
AUTH = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}  # values and writes are for trusted callers


async def test_global_set_get_list_delete(shard_app):
    c = shard_app.client
    resp = await c.post("/api/keychain/42/gcp_token", headers=AUTH, json={
        "token_data": TOKEN, "credential_type": "oauth2", "cache_type": "token", "ttl_seconds": 3600,
        "renew_config": {"refresh_token": "r-secret"}, "auto_renew": True})
    body = await resp.json()
    assert resp.status == 200, body
    assert body["cache_key"] == "gcp_token:42:global" and body["catalog_id"] == "42"
    assert body["status"] == "success" and body["auto_renew"] is True
    assert 3590 <= body["ttl_seconds"] <= 3600 and body["expires_at"]

    got = await (await c.get("/api/keychain/42/gcp_token", headers=AUTH)).json()
    assert got["status"] == "success" and got["expired"] is False
    assert got["token_data"] == TOKEN and got["renew_config"] == {"refresh_token": "r-secret"}
    assert got["credential_type"] == "oauth2" and got["scope_type"] == "global"
    assert got["access_count"] == 1
    assert (await (await c.get("/api/keychain/42/gcp_token", headers=AUTH)).json())["access_count"] == 2

    listing = await (await c.get("/api/keychain/catalog/42", headers=AUTH)).json()
    assert listing["count"] == 1 and listing["catalog_id"] == "42"
    assert "token_data" not in listing["entries"][0] and "renew_config" not in listing["entries"][0]

    deleted = await c.delete("/api/keychain/42/gcp_token", headers=AUTH)
    assert deleted.status == 200 and (await deleted.json())["deleted"] is True
    assert await shard_app.count("keychain") == 0
    again = await c.delete("/api/keychain/42/gcp_token", headers=AUTH)
    assert again.status == 404


async def test_scoped_keys_follow_noetl_format(shard_app):
    c = shard_app.client
    local = await (await c.post("/api/keychain/7/tok", headers=AUTH, json={
        "token_data": {"v": 1}, "scope_type": "local", "execution_id": "555"})).json()
    shared = await (await c.post("/api/keychain/7/tok", headers=AUTH, json={
        "token_data": {"v": 2}, "scope_type": "shared", "execution_id": 555})).json()
    assert local["cache_key"] == "tok:7:555" and shared["cache_key"] == "tok:7:shared:555"
    got_local = await (await c.get("/api/keychain/7/tok", headers=AUTH,
                                   params={"scope_type": "local", "execution_id": "555"})).json()
    got_shared = await (await c.get("/api/keychain/7/tok", headers=AUTH,
                                    params={"scope_type": "shared", "execution_id": "555"})).json()
    assert got_local["token_data"] == {"v": 1} and got_shared["token_data"] == {"v": 2}
    assert got_local["execution_id"] == "555"
    miss = await c.get("/api/keychain/7/tok", headers=AUTH)  # global scope: not set
    body = await miss.json()
    assert miss.status == 200 and body["status"] == "not_found" and "token_data" not in body


async def test_expired_entry_hides_its_value(shard_app):
    c = shard_app.client
    past = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
    await c.post("/api/keychain/9/old", headers=AUTH, json={"token_data": TOKEN, "expires_at": past})
    got = await (await c.get("/api/keychain/9/old", headers=AUTH)).json()
    assert got["status"] == "expired" and got["expired"] is True and "token_data" not in got
    assert got["ttl_seconds"] == 0


@pytest.mark.parametrize("path,payload,status,fragment", [
    ("/api/keychain/abc/tok", {"token_data": {}}, 400, "catalog_id"),
    ("/api/keychain/1/tok", {}, 422, "`token_data`"),
    ("/api/keychain/1/tok", {"token_data": "str"}, 422, "$.token_data"),
    ("/api/keychain/1/tok", {"token_data": {}, "scope_type": "local"}, 400, "execution_id is required"),
    ("/api/keychain/1/tok", {"token_data": {}, "scope_type": "galaxy"}, 422, "$.scope_type"),
    ("/api/keychain/1/tok", {"token_data": {}, "cache_type": "cookie"}, 422, "$.cache_type"),
    ("/api/keychain/1/tok", {"token_data": {}, "ttl_seconds": 0}, 422, "$.ttl_seconds"),
    # Found by fuzzing: past the calendar the expiry overflowed, a 500.
    ("/api/keychain/1/tok", {"token_data": {}, "ttl_seconds": 13893046498542751744}, 422, "$.ttl_seconds"),
    ("/api/keychain/1/tok", {"token_data": {}, "ttl_seconds": "soon"}, 422, "$.ttl_seconds"),
    ("/api/keychain/1/tok", {"token_data": {}, "execution_id": "x1"}, 400, "execution_id"),
])
async def test_bad_keychain_requests_write_nothing(shard_app, path, payload, status, fragment):
    resp = await shard_app.client.post(path, headers=AUTH, json=payload)
    body = await resp.json()
    assert resp.status == status, body
    assert fragment in body["error"]
    assert await shard_app.count("keychain") == 0


async def test_keychain_value_encrypted_at_rest(shard_app):
    await shard_app.client.post("/api/keychain/3/k", headers=AUTH,
                                json={"token_data": TOKEN, "renew_config": {"r": "renew-secret"}})
    row = await shard_app.cluster.fetchrow("SELECT * FROM noetl.keychain")
    text = " ".join(str(v) for v in row.values())
    assert TOKEN["access_token"] not in text and "renew-secret" not in text


async def test_values_and_writes_need_a_trusted_caller(shard_app):
    """A keychain value is a secret and a stored one is what a step uses: without the token (and
    outside NOETL_TRUSTED_NETWORKS, empty here) reading, writing and deleting are refused."""
    c = shard_app.client
    await c.post("/api/keychain/5/k", json={"token_data": TOKEN}, headers=AUTH)
    for method, body in (("GET", None), ("POST", {"token_data": {"access_token": "mine"}}), ("DELETE", None)):
        resp = await c.request(method, "/api/keychain/5/k", json=body)
        text = await resp.text()
        assert resp.status == 403 and TOKEN["access_token"] not in text, (method, text)
    got = await (await c.get("/api/keychain/5/k", headers=AUTH)).json()
    assert got["token_data"] == TOKEN
    listing = await (await c.get("/api/keychain/catalog/5")).json()  # names only, for anyone
    assert listing["count"] == 1 and "token_data" not in listing["entries"][0]


async def test_token_route_mints_from_a_credential_for_trusted_callers_only(shard_app):
    c = shard_app.client
    for name, data in (("stored", {"access_token": "stored-token-123"}), ("plain", {"user": "u", "password": "p"})):
        resp = await c.post("/api/credentials", json={"name": name, "type": "google_oauth", "data": data})
        assert resp.status == 200, await resp.json()
    minted = await c.post("/api/credentials/stored/token", headers=AUTH, json={})
    assert (minted.status, await minted.json()) == (200, {"token": "stored-token-123", "token_type": "Bearer"})
    assert (await c.post("/api/credentials/stored/token", json={})).status == 403
    missing = await c.post("/api/credentials/nobody/token", headers=AUTH, json={})
    assert missing.status == 404 and "nobody" in str(await missing.json())
    nothing = await c.post("/api/credentials/plain/token", headers=AUTH, json={})
    body = await nothing.json()
    assert nothing.status == 422 and "token('plain')" in str(body)
    no_sa = await c.post("/api/credentials/stored/token", headers=AUTH, json={"audience": "https://svc"})
    assert no_sa.status == 422 and "service account" in str(await no_sa.json())
    bad = await c.post("/api/credentials/stored/token", headers=AUTH, json={"audiance": "x"})
    assert bad.status in (400, 422) and "audiance" in str(await bad.json())
