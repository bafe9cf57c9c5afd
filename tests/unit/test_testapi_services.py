"""The test API's stand-ins for the e2e server's PFT/patient endpoints and for IB's Client Portal
gateway, as the pft_flow_test, patient_batch_parallel_queue and interactive_brokers playbooks
call them (served for real on a loopback port)."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.support.testapi import build_app
from tests.support.testapi.pft import PAGE_BOUNDS, page_count


@pytest.fixture
async def api():
    async with TestServer(build_app()) as srv, aiohttp.ClientSession(base_url=str(srv.make_url(""))) as session:
        yield session


async def get(api, path, **params):
    async with api.get(path, params=params) as r:
        return r.status, await r.json()


async def test_patient_pages_end_where_has_more_says_and_the_batch_returns_the_same_pages(api):
    for data_type, (low, high) in PAGE_BOUNDS.items():
        page = 1
        while True:
            status, body = await get(api, f"/api/v1/patient/{data_type}", patientId="1207", page=page)
            assert status == 200 and len(body["data"]) == 1 and body["paging"]["page"] == page
            if not body["paging"]["hasMore"]:
                break
            page += 1
        assert low <= page <= high and page == body["paging"]["total"] == page_count("1207", data_type)
        assert (await get(api, f"/api/v1/patient/{data_type}", patientId="1207", page=page + 1))[0] == 404
        _, batch = await get(api, f"/api/v1/pft/batch/{data_type}", patientIds="1207,3", patientsPerFacility=1000)
        mine = [r for r in batch["rows"] if r["patient_id"] == 1207]
        assert [r["page_number"] for r in mine] == list(range(1, page + 1)) and mine[-1]["is_last_page"]
        assert {r["facility_mapping_id"] for r in mine} == {2} and batch["rowCount"] == len(batch["rows"])


async def test_assessments_name_their_mds_ids_and_details_answer_one_id_per_request(api):
    _, body = await get(api, "/api/v1/patient/assessments", patientId="7", page=1)
    ids = body["data"][0]["mdsAssessmentIds"]
    assert 5 <= len(ids) == body["data"][0]["mdsCount"] <= 10
    status, detail = await get(api, "/api/v1/pft/mds/details", assessmentId=ids[0])
    assert status == 200 and detail["rows"][0]["payload"]["assessmentId"] == ids[0] and detail["rowCount"] == 1
    status, refused = await get(api, "/api/v1/pft/mds/details", assessmentId=f"{ids[0]},{ids[1]}")
    assert status == 400 and "exactly one" in refused["detail"]
    _, demo = await get(api, "/api/v1/patient/demographics", patientId="7")
    _, batch = await get(api, "/api/v1/pft/batch/demographics", patientIds="7")
    assert batch["rows"][0]["payload"] == demo


@pytest.mark.parametrize(("path", "params", "status", "field"), [
    ("/api/v1/pft/batch/assessments", {}, 422, "patientIds"),
    ("/api/v1/pft/batch/assessments", {"patientIds": "1,x"}, 400, "patientIds"),
    ("/api/v1/pft/batch/assessments", {"patientIds": ",".join(map(str, range(1, 502)))}, 400, "patientIds"),
    ("/api/v1/pft/batch/assessments", {"patientIds": "1", "pageSize": "0"}, 422, "pageSize"),
    ("/api/v1/pft/batch/labs", {"patientIds": "1"}, 400, "data_type"),
    ("/api/v1/patient/conditions", {"page": "1"}, 422, "patientId"),
    ("/api/v1/patient/conditions", {"patientId": "1", "page": "two"}, 422, "page"),
])
async def test_bad_input_is_a_4xx_naming_the_field(api, path, params, status, field):
    got, body = await get(api, path, **params)
    assert got == status and field in body["detail"]


async def test_ib_gateway_session_accounts_and_history(api):
    _, auth = await get(api, "/v1/api/iserver/auth/status")
    assert auth["authenticated"] and auth["connected"] and not auth["competing"]
    _, accounts = await get(api, "/v1/api/portfolio/accounts")
    account = accounts[0]["accountId"]
    assert (await get(api, f"/v1/api/portfolio/{account}/ledger"))[1]["USD"]["acctcode"] == account
    async with api.get("/v1/api/portfolio//positions/0") as r:  # no account id: no such path (ibkr_api positions)
        assert r.status == 404
    _, futures = await get(api, "/v1/api/trsrv/futures", symbols="NG", exchange="NYMEX")
    conid = futures["NG"][0]["conid"]
    _, history = await get(api, "/v1/api/iserver/marketdata/history", conid=str(conid), period="2d", bar="5mins")
    stamps = [b["t"] for b in history["data"]]
    assert len(stamps) == 576 and stamps == sorted(stamps) and history["barLength"] == 300
    assert (await get(api, "/v1/api/iserver/marketdata/history", conid=str(conid), period="2x", bar="5mins"))[0] == 400
    async with api.post("/v1/api/logout") as r:
        assert r.status == 200
    assert (await get(api, "/v1/api/portfolio/accounts"))[0] == 401
    _, tickle = await get(api, "/v1/api/tickle")
    assert tickle["iserver"]["authStatus"]["authenticated"] is False and tickle["session"]
    async with api.post("/v1/portal/iserver/reauthenticate", params={"force": "true"}) as r:
        assert r.status == 200
    assert (await get(api, "/v1/api/portfolio/accounts"))[0] == 200
