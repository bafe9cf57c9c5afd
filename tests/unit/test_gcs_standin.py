"""The test API's GCS stand-in with the real clients: google-cloud-storage (JSON API, through
STORAGE_EMULATOR_HOST) and DuckDB's httpfs (XML API, `gs://` with an HMAC key), one store."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.support.testapi import build_app
from tests.support.testapi.gcs import GCS_HOST, HMAC_KEY_ID


@pytest.fixture
async def api():
    async with TestServer(build_app()) as srv:
        yield str(srv.make_url("")).rstrip("/")


def _google_client_round_trip(base: str) -> dict[str, Any]:
    os.environ["STORAGE_EMULATOR_HOST"] = base
    try:
        from google.cloud import storage

        client = storage.Client()
        bucket = client.bucket("reports")
        bucket.blob("exports/a.csv").upload_from_string("id,name\n1,x\n", content_type="text/csv")
        bucket.blob("exports/b.bin").upload_from_string(b"\x00\x01" * 5000)
        return {"text": bucket.blob("exports/a.csv").download_as_text(),
                "bytes": len(bucket.blob("exports/b.bin").download_as_bytes()),
                "names": [b.name for b in client.list_blobs("reports", prefix="exports/")]}
    finally:
        del os.environ["STORAGE_EMULATOR_HOST"]


async def test_google_cloud_storage_uploads_lists_and_downloads(api):
    got = await asyncio.to_thread(_google_client_round_trip, api)
    assert got == {"text": "id,name\n1,x\n", "bytes": 10000, "names": ["exports/a.csv", "exports/b.bin"]}


def _duckdb(endpoint: str, key_id: str, sql: list[str]) -> list[Any]:
    import duckdb

    from noetl_worker.tools import duckdb_setup

    con = duckdb.connect(":memory:")
    try:
        duckdb_setup.install_bundled(con)
        con.execute("LOAD httpfs")
        con.execute(f"CREATE SECRET g (TYPE gcs, KEY_ID '{key_id}', SECRET 's', SCOPE 'gs://lake', "
                    f"ENDPOINT '{endpoint}', URL_STYLE 'path', USE_SSL false)")
        for statement in sql[:-1]:
            con.execute(statement)
        return con.execute(sql[-1]).fetchall()
    finally:
        con.close()


async def test_duckdb_writes_gs_paths_that_the_json_api_then_serves(api):
    endpoint = api.split("://", 1)[1] + "/gcs-xml"
    rows = await asyncio.to_thread(_duckdb, endpoint, HMAC_KEY_ID, [
        "COPY (SELECT range AS n FROM range(1000)) TO 'gs://lake/t/n.parquet' (FORMAT PARQUET)",
        "COPY (SELECT 'a' AS k) TO 'gs://lake/t/k.csv' (FORMAT CSV, HEADER TRUE)",
        "SELECT count(*), sum(n) FROM 'gs://lake/t/n.parquet'"])
    assert rows == [(1000, 499500)]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{api}/download/storage/v1/b/lake/o/t%2Fk.csv", params={"alt": "media"}) as r:
            assert (r.status, await r.text()) == (200, "k\na\n")
        async with http.get(f"{api}/storage/v1/b/lake/o", params={"prefix": "t/"}) as r:
            assert [o["name"] for o in (await r.json())["items"]] == ["t/k.csv", "t/n.parquet"]


async def test_an_unknown_hmac_key_is_refused(api):
    endpoint = api.split("://", 1)[1] + "/gcs-xml"
    with pytest.raises(Exception, match="403"):
        await asyncio.to_thread(_duckdb, endpoint, "GOOG1EWRONG", ["SELECT * FROM 'gs://lake/none.parquet'"])


async def test_under_gcs_own_host_a_bearer_token_issued_here_is_required(api):
    async with aiohttp.ClientSession() as http:
        headers = {"Host": GCS_HOST}
        async with http.get(f"{api}/storage/v1/b", params={"project": "p"}, headers=headers) as r:
            assert r.status == 401
        async with http.get(f"{api}/storage/v1/b", params={"project": "p"},
                            headers={**headers, "Authorization": "Bearer not-issued-here"}) as r:
            assert r.status == 401
        async with http.get(f"{api}/storage/v1/b", params={"project": "p"}) as r:  # the emulator address
            assert (r.status, (await r.json())["items"]) == (200, [])
        async with http.get(f"{api}/storage/v1/b") as r:
            assert r.status == 400 and "project" in (await r.json())["error"]["message"]


async def test_bad_uploads_and_ranges_are_4xx_naming_the_problem(api):
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{api}/upload/storage/v1/b/x/o", params={"uploadType": "multipart"},
                             headers={"Content-Type": "multipart/related; boundary=b"}, data=b"junk") as r:
            assert r.status == 400 and "multipart" in (await r.json())["error"]["message"]
        async with http.post(f"{api}/upload/storage/v1/b/x/o", params={"uploadType": "media"}, data=b"1") as r:
            assert r.status == 400 and "name" in (await r.json())["error"]["message"]
        async with http.post(f"{api}/upload/storage/v1/b/x/o", params={"uploadType": "resumable", "name": "n"}) as r:
            assert r.status == 400 and "resumable" in (await r.json())["error"]["message"]
        signed = {"Authorization": f"AWS4-HMAC-SHA256 Credential={HMAC_KEY_ID}/20260101/auto/s3/aws4_request"}
        async with http.put(f"{api}/gcs-xml/x/obj", data=b"abc", headers=signed) as r:
            assert r.status == 200
        async with http.get(f"{api}/gcs-xml/x/obj", headers={**signed, "Range": "bytes=1-"}) as r:
            assert (r.status, await r.read()) == (206, b"bc")
        async with http.get(f"{api}/gcs-xml/x/obj", headers={**signed, "Range": "items=zz"}) as r:
            assert r.status == 416 and "InvalidRange" in await r.text()
        async with http.post(f"{api}/gcs-xml/x/big", params={"uploads": ""}, headers=signed) as r:
            upload_id = (await r.text()).split("<UploadId>")[1].split("<")[0]
        async with http.put(f"{api}/gcs-xml/x/big", params={"uploadId": upload_id, "partNumber": "one"},
                            headers=signed, data=b"z") as r:
            assert r.status == 400 and "partNumber" in await r.text()
