"""The worker's GCS reads and writes (script sources, the `gcs` result tier) against the test API's
GCS stand-in, through google-cloud-storage as on a cluster (STORAGE_EMULATOR_HOST)."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestServer

from noetl_worker import gcs_objects, result_tiers
from noetl_worker.tools import scripts
from noetl_worker.tools.base import ToolContext, ToolError
from tests.support.testapi import build_app

CTX = ToolContext(credentials=None, execution_id=7, step="s", timeout_seconds=5)  # type: ignore[arg-type]
REF = "noetl://execution/7/result/start/99"


@pytest.fixture
async def gcs(monkeypatch):
    async with TestServer(build_app()) as srv:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", str(srv.make_url("")).rstrip("/"))
        yield


async def _no_store(ref: str):
    raise AssertionError(f"read {ref} from the result store, not GCS")


async def test_a_gcs_script_source_is_downloaded_from_its_bucket(gcs):
    await gcs_objects.upload("gs://demo/scripts/job.py", b"print('hi')\n", "text/x-python")
    script = {"uri": "gs://demo/scripts/job.py", "source": {"type": "gcs", "auth": "sa"}}
    assert await scripts.script_text("script", script, CTX) == "print('hi')\n"


async def test_a_missing_gcs_script_fails_naming_the_object(gcs):
    with pytest.raises(ToolError, match="gs://demo/scripts/absent.py"):
        await scripts.script_text("script", {"uri": "gs://demo/scripts/absent.py", "source": {"type": "gcs"}}, CTX)


async def test_a_gcs_tier_reference_is_read_from_its_object(gcs, monkeypatch):
    monkeypatch.setenv("NOETL_GCS_BUCKET", "results-bucket")
    uri = result_tiers.gcs_uri(REF)
    assert uri == "gs://results-bucket/results/execution/7/result/start/99"  # NoETL's GCS backend key
    await gcs_objects.upload(uri, b'{"count": 2}', "application/json")
    assert await result_tiers.load({"ref": REF, "store": "gcs", "meta": {"uri": uri}}, _no_store) == {"count": 2}


async def test_a_db_tier_reference_is_read_from_the_result_store():
    async def store(ref: str):
        return {"from": ref}

    assert await result_tiers.load({"ref": REF, "store": "db", "meta": {}}, store) == {"from": REF}
    assert await result_tiers.load(REF, store) == {"from": REF}


@pytest.mark.parametrize("bad", ["gs://only-bucket", "s3://b/x", "gs:///x"])
def test_a_gcs_uri_needs_a_bucket_and_a_name(bad):
    with pytest.raises(ToolError, match="gs://<bucket>/<name>"):
        gcs_objects.split_uri(bad)


async def test_without_gcs_configured_a_gcs_script_fails_saying_so(monkeypatch):
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    with pytest.raises(ToolError, match="no gcs backend configured"):
        await scripts.script_text("script", {"uri": "gs://demo/x.py", "source": {"type": "gcs"}}, CTX)
