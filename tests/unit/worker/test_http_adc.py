"""The http tool's `auth: {source: adc}` against the test API (served for real on a loopback port):
google-auth reads the key file GOOGLE_APPLICATION_CREDENTIALS names, gets a token at its token_uri
(the test API's Google token endpoint) and the tool sends it to Resource Manager's stand-in, which
refuses any other bearer."""

from __future__ import annotations

import json

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from noetl_worker.tools import http_tool
from noetl_worker.tools.base import ToolContext, ToolError
from tests.support.testapi import build_app
from tests.support.testapi.identity import IDENTITY

CRM = {"Host": "cloudresourcemanager.googleapis.com"}  # what the proxy relays for the real host


class NoCredentials:
    async def get_credential(self, name):
        raise AssertionError("not used")


def context() -> ToolContext:
    return ToolContext(credentials=NoCredentials(), execution_id=1, step="verify_auth", timeout_seconds=10)


@pytest.fixture
async def api():
    app = build_app()
    async with TestServer(app) as srv:
        yield srv, app


async def service_account(srv: TestServer) -> dict:
    async with aiohttp.ClientSession() as session, session.get(srv.make_url("/google/service-account")) as r:
        return await r.json()


def adc_file(tmp_path, monkeypatch, account: dict) -> None:
    path = tmp_path / "adc.json"
    path.write_text(json.dumps(account))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))


def issued_google_tokens(app) -> set[str]:
    return {t for t in app[IDENTITY].issued if t.startswith("gcp-")}


async def test_a_token_is_fetched_once_and_sent_as_the_bearer(api, tmp_path, monkeypatch):
    srv, app = api
    adc_file(tmp_path, monkeypatch, await service_account(srv))
    ctx = context()
    url = str(srv.make_url("/v1/projects/mestumre-dev"))
    # the playbook's own Authorization header does not survive: ADC's bearer replaces it
    got = await http_tool.run({"url": url, "auth": {"source": "adc"},
                               "headers": {**CRM, "authorization": "Bearer stale"}}, {}, ctx)
    assert got["status_code"] == 200
    assert {k: got["body"][k] for k in ("projectId", "name", "lifecycleState")} == {
        "projectId": "mestumre-dev", "name": "mestumre-dev", "lifecycleState": "ACTIVE"}
    assert len(issued_google_tokens(app)) == 1
    # NoETL's Rust spelling, same scopes: the worker's credentials are reused, no second token
    again = await http_tool.run({"url": url, "headers": CRM,
                                 "auth": {"type": "gcp_adc", "scopes": ["https://www.googleapis.com/auth/cloud-platform"]}},
                                {}, ctx)
    assert again["body"]["projectNumber"] == got["body"]["projectNumber"]
    assert len(issued_google_tokens(app)) == 1
    # without the auth the stand-in answers 401, as Google does, and the step fails as an auth error
    with pytest.raises(ToolError, match="answered 401") as err:
        await http_tool.run({"url": url, "headers": CRM}, {}, ctx)
    assert err.value.details["kind"] == "auth"


async def test_gke_cluster_list_through_adc(api, tmp_path, monkeypatch):
    srv, _ = api
    adc_file(tmp_path, monkeypatch, await service_account(srv))
    got = await http_tool.run({"url": str(srv.make_url("/v1/projects/mestumre-dev/locations/us-central1/clusters")),
                               "headers": {"Host": "container.googleapis.com"}, "auth": {"source": "adc"}}, {},
                              context())
    assert got["status_code"] == 200 and got["body"] is not None and got["body"].get("clusters", []) == []


async def test_a_missing_adc_file_is_a_clear_step_error(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere.json"
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(missing))
    with pytest.raises(ToolError, match="no usable Application Default Credentials") as err:
        # the request is never sent: the address does not matter
        await http_tool.run({"url": "http://127.0.0.1:9/v1/projects/p", "auth": {"source": "adc"}}, {}, context())
    assert str(missing) in str(err.value) and err.value.details == {"kind": "auth", "retryable": False}


async def test_a_refused_or_broken_key_fails_the_step_without_showing_it(api, tmp_path, monkeypatch):
    srv, _ = api
    account = await service_account(srv)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    foreign = other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()).decode()
    url = str(srv.make_url("/v1/projects/mestumre-dev"))
    # a key the token endpoint does not know: its assertion is refused (invalid_grant)
    adc_file(tmp_path, monkeypatch, {**account, "private_key": foreign})
    with pytest.raises(ToolError, match="could not get an access token: invalid_grant") as err:
        await http_tool.run({"url": url, "headers": CRM, "auth": {"source": "adc"}}, {}, context())
    body = foreign.splitlines()[1]
    assert body not in str(err.value) and err.value.details["retryable"] is False
    # a key that is not one at all
    broken = "-----BEGIN PRIVATE KEY-----\nTHISISNOTAKEYBUTSECRETMATERIAL\n-----END PRIVATE KEY-----\n"
    adc_file(tmp_path, monkeypatch, {**account, "private_key": broken})
    with pytest.raises(ToolError, match="no usable Application Default Credentials") as err:
        await http_tool.run({"url": url, "headers": CRM, "auth": {"source": "adc"}}, {}, context())
    assert "THISISNOTAKEY" not in str(err.value)


async def test_adc_scopes_must_be_scope_urls():
    with pytest.raises(ToolError, match="auth.scopes"):
        await http_tool.run({"url": "http://127.0.0.1:9/", "auth": {"source": "adc", "scopes": [1]}}, {}, context())
