"""The /api/internal/* bearer gate (DESIGN: 403 missing/wrong/non-Bearer, 503 unconfigured)."""

from __future__ import annotations

import pytest

from .conftest import INTERNAL_TOKEN, start_harness, stop_harness


async def test_correct_bearer_token_is_accepted(shard_app):
    resp = await shard_app.client.get("/api/internal/ping",
                                      headers={"Authorization": f"Bearer {INTERNAL_TOKEN}"})
    assert resp.status == 200
    assert (await resp.json()) == {"status": "ok", "shard_index": 0}


@pytest.mark.parametrize("header", [
    None,
    "Bearer wrong-token",
    f"Basic {INTERNAL_TOKEN}",
    f"Token {INTERNAL_TOKEN}",
    "Bearer ",
    INTERNAL_TOKEN,
    f"Bearer {INTERNAL_TOKEN}x",
])
async def test_missing_wrong_or_non_bearer_is_403(shard_app, header):
    headers = {} if header is None else {"Authorization": header}
    resp = await shard_app.client.get("/api/internal/ping", headers=headers)
    body = await resp.json()
    assert resp.status == 403
    assert body["status"] == 403 and "Bearer" in body["error"]
    assert INTERNAL_TOKEN not in body["error"]


async def test_bearer_scheme_is_case_insensitive(shard_app):
    resp = await shard_app.client.get("/api/internal/ping",
                                      headers={"Authorization": f"bearer {INTERNAL_TOKEN}"})
    assert resp.status == 200


async def test_no_configured_token_is_503(database_factory):
    h = await start_harness(await database_factory(), internal_token=None)
    try:
        resp = await h.client.get("/api/internal/ping", headers={"Authorization": "Bearer anything"})
        body = await resp.json()
        assert resp.status == 503
        assert "NOETL_INTERNAL_API_TOKEN" in body["error"]
        # Public routes stay open.
        assert (await h.client.get("/api/health")).status == 200
    finally:
        await stop_harness(h)
