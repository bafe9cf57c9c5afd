"""Every JSON-body route rejects malformed, mistyped and oversized bodies with a 4xx JSON error
and writes nothing."""

from __future__ import annotations

import pytest

from .conftest import INTERNAL_TOKEN

AUTH = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}  # a trusted caller: keychain writes need one

# (method, path, a body with one wrongly typed field, the field's JSON path)
ROUTES = [
    ("POST", "/api/catalog/register", b'{"content": ["x"]}', "$.content"),
    ("POST", "/api/catalog/list", b'{"all_versions": "yes"}', "$.all_versions"),
    ("POST", "/api/catalog/resource", b'{"catalog_id": 1.5}', "$.catalog_id"),
    ("POST", "/api/credentials", b'{"name": "n", "data": [1]}', "$.data"),
    ("POST", "/api/keychain/1/name", b'{"token_data": {}, "auto_renew": "no"}', "$.auto_renew"),
    ("POST", "/api/worker/pool/register", b'{"name": "n", "runtime": "python", "labels": 1}', "$.labels"),
    ("POST", "/api/worker/pool/heartbeat", b'{"name": 1}', "$.name"),
    ("POST", "/api/worker/pool/deregister", b'{"name": false}', "$.name"),
    ("DELETE", "/api/worker/pool/deregister", b'{"name": null, "x": 1, "name2": 2, "name": 3}', "$.name"),
    # NoETL's frames routes (their bounds are NoETL's: a lease of 5 to 3600 seconds)
    ("POST", "/api/stages/7/frames/claim", b'{"worker_id": "w", "lease_seconds": 2}', "$.lease_seconds"),
    ("POST", "/api/frames/7/heartbeat", b'{"worker_id": 1}', "$.worker_id"),
    ("POST", "/api/frames/7/commit", b'{"worker_id": "w", "row_count": -1}', "$.row_count"),
]
TABLES = ("catalog", "credential", "keychain", "runtime")


async def _counts(h) -> dict[str, int]:
    return {t: await h.count(t) for t in TABLES}


@pytest.mark.parametrize("method,path,mistyped,field", ROUTES)
async def test_each_route_rejects_bad_bodies(shard_app, method, path, mistyped, field):
    c = shard_app.client
    before = await _counts(shard_app)
    cases = [
        (b'{"a": ', 400, "malformed JSON"),
        (b'"just a string"', 422, "Expected `object`"),
        (mistyped, 422, field),
        (b'{"pad": "' + b"x" * (shard_app.settings.http.max_body_bytes + 1) + b'"}', 413, "request body too large"),
    ]
    for raw, status, fragment in cases:
        resp = await c.request(method, path, data=raw, headers={"Content-Type": "application/json", **AUTH})
        body = await resp.json()
        assert resp.status == status, (raw[:40], body)
        assert fragment in body["error"] and body["status"] == status
    assert await _counts(shard_app) == before


# Postgres stores no U+0000 in text or jsonb: found by the fuzzer as a 500 on every JSON-storing route.
NUL_BODIES = [
    ("POST", "/api/worker/pool/register", b'{"name": "n", "runtime": "python", "labels": {"a": "x\\u0000"}}'),
    ("POST", "/api/credentials", b'{"name": "n", "data": {}, "meta": {"a": "\\u0000"}}'),
    ("POST", "/api/credentials", b'{"name": "n\\u0000", "data": {}}'),
]


@pytest.mark.parametrize("method,path,raw", NUL_BODIES)
async def test_text_postgres_cannot_store_is_a_422(shard_app, method, path, raw):
    before = await _counts(shard_app)
    resp = await shard_app.client.request(method, path, data=raw, headers={"Content-Type": "application/json"})
    body = await resp.json()
    assert resp.status == 422 and body["code"] == "validation_error", body
    assert await _counts(shard_app) == before
