"""The local test API's pages, as the e2e playbooks walk them (served for real on a loopback port)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.support.testapi import build_app


@pytest.fixture
async def api():
    async with TestServer(build_app()) as srv, aiohttp.ClientSession(base_url=str(srv.make_url(""))) as session:
        yield session


async def get(api, path, **params):
    async with api.get(path, params=params) as r:
        return r.status, await r.json(), r.headers


async def test_page_offset_and_cursor_pagination_walk_all_35_items(api):
    seen, page = [], 1
    while True:
        _, body, _ = await get(api, "/api/v1/assessments", page=page)
        seen += [i["id"] for i in body["data"]]
        if not body["paging"]["hasMore"]:
            break
        page += 1
    assert seen == list(range(1, 36)) and page == 4
    _, body, _ = await get(api, "/api/v1/users", offset=30, limit=10)
    assert [u["id"] for u in body["users"]] == [31, 32, 33, 34, 35] and body["has_more"] is False
    ids, cursor = [], None
    while True:
        _, body, _ = await get(api, "/api/v1/events", **({"cursor": cursor} if cursor else {}))
        ids += [e["id"] for e in body["events"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert ids == list(range(1, 36))


async def test_flaky_fails_a_named_page_once_and_reset_rearms_it(api):
    assert (await get(api, "/api/v1/flaky", page=2, fail_on="2,3"))[0] == 500
    assert (await get(api, "/api/v1/flaky", page=2, fail_on="2,3"))[0] == 200
    async with api.post("/api/v1/flaky/reset") as r:
        assert r.status == 200
    assert (await get(api, "/api/v1/flaky", page=2, fail_on="2"))[0] == 500


async def test_errors_and_rate_limit_answer_with_retry_after(api):
    status, _, headers = await get(api, "/api/v1/errors", error_type="429", retry_after=3)
    assert status == 429 and headers["Retry-After"] == "3"
    answers = [(await get(api, "/api/v1/rate-limited", page=1, requests_per_second=2))[0] for _ in range(3)]
    assert answers == [200, 200, 429]


async def test_concurrency_probe_counts_overlapping_requests(api):
    async with api.post("/api/v1/concurrency/reset"):
        pass
    await asyncio.gather(*(get(api, "/api/v1/concurrency/probe", delay_seconds=0.2, label=str(i)) for i in range(3)))
    _, stats, _ = await get(api, "/api/v1/concurrency/stats")
    assert stats["started"] == stats["completed"] == 3 and stats["max_active"] >= 2
    assert [e["phase"] for e in stats["recent_events"]].count("end") == 3


async def test_jsonplaceholder_resources_have_its_counts_fields_and_filters(api):
    status, posts, _ = await get(api, "/jsonplaceholder/posts")
    assert status == 200 and len(posts) == 100 and set(posts[0]) == {"userId", "id", "title", "body"}
    _, mine, _ = await get(api, "/jsonplaceholder/posts", userId=3)
    assert [p["id"] for p in mine] == list(range(21, 31))
    status, one, _ = await get(api, "/jsonplaceholder/users/10")
    assert status == 200 and one["id"] == 10 and one["address"]["geo"]
    async with api.get("/jsonplaceholder/users/11") as r:
        assert r.status == 404
    async with api.get("/jsonplaceholder/widgets") as r:
        assert r.status == 404


async def test_the_proxy_answers_for_stand_in_hosts_over_tls_and_refuses_others(tmp_path):
    """What a worker with HTTPS_PROXY does: CONNECT, TLS to the named host (trusting the test API's
    certificate), the request as written; a host that is not a stand-in never gets a tunnel."""
    import ssl

    from tests.support.testapi import proxy
    from tests.support.testapi.tls import write_self_signed

    cert, key = write_self_signed(tmp_path, ("api.open-meteo.com", "httpbin.org"))
    async with TestServer(build_app()) as srv:
        server = await proxy.serve("127.0.0.1", 0, frozenset({"api.open-meteo.com", "httpbin.org"}), str(cert),
                                   str(key), srv.port)
        port = server.sockets[0].getsockname()[1]
        trust = ssl.create_default_context(cafile=str(cert))
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get("https://api.open-meteo.com/v1/forecast", proxy=f"http://127.0.0.1:{port}",
                                       ssl=trust, params={"latitude": "52.52", "longitude": "13.41",
                                                          "current": "temperature_2m"}) as r:
                    body = await r.json()
                    assert r.status == 200 and body["latitude"] == 52.52
                    assert isinstance(body["current"]["temperature_2m"], float)
                async with session.post("https://httpbin.org/post", json={"a": 1}, proxy=f"http://127.0.0.1:{port}",
                                        ssl=trust) as r:
                    assert r.status == 200 and (await r.json())["data"] == '{"a": 1}'
                with pytest.raises(aiohttp.ClientHttpProxyError, match="403"):
                    async with session.get("https://example.com/", proxy=f"http://127.0.0.1:{port}", ssl=trust):
                        pass
        finally:
            server.close()


async def on_host(api, method, host, path, **kw):
    async with api.request(method, path, headers={"Host": host, **kw.pop("headers", {})}, **kw) as r:
        return r.status, (await r.json()) if r.content_type == "application/json" else await r.text()


async def test_public_api_stand_ins_answer_only_on_their_own_host(api):
    status, repo = await on_host(api, "GET", "api.github.com", "/repos/microsoft/vscode")
    assert status == 200 and repo["full_name"] == "microsoft/vscode" and repo["stargazers_count"] > 0
    assert (await on_host(api, "GET", "127.0.0.1", "/repos/microsoft/vscode"))[0] == 404
    status, page = await on_host(api, "GET", "en.wikipedia.org", "/api/rest_v1/page/summary/NoSQL")
    assert page["title"] == "NoSQL" and "'" not in page["extract"] and page["timestamp"].endswith("Z")
    status, body = await on_host(api, "GET", "api.example.com", "/data", params={"page": "3", "pageSize": "100"})
    assert len(body["items"]) == 50 and body["paging"] == {"page": 3, "pageSize": 100, "hasMore": False, "total": 250}
    assert (await on_host(api, "GET", "api.example.com", "/data", params={"page": "x"}))[0] == 400
    assert (await on_host(api, "GET", "api.example.com", "/users/7"))[1]["status"] == "active"
    assert len((await on_host(api, "GET", "jsonplaceholder.typicode.com", "/posts"))[1]) == 100


async def test_ibm_quantum_runtime_stand_in_runs_a_sampler_job(api):
    auth = {"Authorization": "Bearer k", "IBM-API-Version": "2024-06-13"}
    job = {"program_id": "sampler", "backend": "ibm_brisbane", "params": {"pubs": [["qasm", None]]}}
    host = "api.quantum.ibm.com"
    assert (await on_host(api, "POST", host, "/runtime/jobs", json=job))[0] == 401
    assert (await on_host(api, "POST", host, "/runtime/jobs", json={"backend": "b"}, headers=auth))[0] == 400
    status, submitted = await on_host(api, "POST", host, "/runtime/jobs", json=job, headers=auth)
    assert status == 200
    status, state = await on_host(api, "GET", host, f"/runtime/jobs/{submitted['id']}", headers=auth)
    assert state["status"] == "Completed"
    _, results = await on_host(api, "GET", host, f"/runtime/jobs/{submitted['id']}/results", headers=auth)
    assert results["results"][0]["data"]["c"]["counts"] == {"00": 512, "11": 512}
    assert (await on_host(api, "GET", host, "/runtime/jobs/nope", headers=auth))[0] == 404


async def test_open_meteo_current_weather(api):
    _, body, _ = await get(api, "/v1/forecast", latitude="51.5", longitude="-0.13", current_weather="true")
    assert set(body["current_weather"]) >= {"temperature", "windspeed"}
    _, body, _ = await get(api, "/v1/forecast", latitude="51.5", longitude="-0.13", current="temperature_2m")
    assert "current_weather" not in body and "temperature_2m" in body["current"]


async def google_access_token(api) -> str:
    """A token for the test API's service account, the way Google's client libraries get one."""
    import google.auth.transport.requests
    from google.oauth2 import service_account

    async with api.get("/google/service-account") as r:
        info = await r.json()
    credentials = service_account.Credentials.from_service_account_info(
        info, scopes=["https://www.googleapis.com/auth/cloud-platform"])
    await asyncio.to_thread(credentials.refresh, google.auth.transport.requests.Request())
    return credentials.token


async def test_resource_manager_and_gke_stand_ins_want_a_google_access_token(api):
    crm, gke = "cloudresourcemanager.googleapis.com", "container.googleapis.com"
    clusters = "/v1/projects/mestumre-dev/locations/us-central1/clusters"
    status, body = await on_host(api, "GET", crm, "/v1/projects/mestumre-dev")
    assert status == 401 and body["error"]["status"] == "UNAUTHENTICATED"
    assert (await on_host(api, "GET", gke, clusters, headers={"Authorization": "Bearer gcp-999"}))[0] == 401
    bearer = {"Authorization": f"Bearer {await google_access_token(api)}"}
    status, project = await on_host(api, "GET", crm, "/v1/projects/mestumre-dev", headers=bearer)
    assert status == 200 and project["projectId"] == project["name"] == "mestumre-dev"
    assert project["lifecycleState"] == "ACTIVE" and len(project["projectNumber"]) == 12
    assert (await on_host(api, "GET", crm, "/v1/projects/mestumre-dev", headers=bearer))[1] == project
    assert (await on_host(api, "GET", crm, "/v1/projects/Not_A_Project", headers=bearer))[0] == 403
    assert await on_host(api, "GET", gke, clusters, headers=bearer) == (200, {})
    assert (await on_host(api, "GET", gke, "/v1/projects/mestumre-dev/locations/mars/clusters", headers=bearer))[0] == 400
    # the same paths on any other host are still Secret Manager's (a path without `:access` is unknown there)
    assert (await on_host(api, "GET", "127.0.0.1", "/v1/projects/mestumre-dev", headers=bearer))[0] == 404
