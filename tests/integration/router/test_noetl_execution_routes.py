"""NoETL execution routes through the router onto the owning shards: `POST /api/execute/batch`,
batch status and stream for a `POST /api/events/batch` request id, `POST /api/executions/cleanup`
(fanned out to every shard) and `GET /api/executions/{id}` paging with NoETL's totals. No worker
runs here: the test claims commands and posts events itself."""

from __future__ import annotations

import pytest
import pytest_asyncio

from noetl_common.ids import mint_for_shard
from noetl_common.sharding import shard_for

from .conftest import SHARDS
from .noetl_helpers import claim, issued_command, on_owner, register, start

pytestmark = pytest.mark.integration

PLAYBOOK = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: routes, path: tests/noetl_routes}
workflow:
  - step: start
    tool: {kind: python, code: 'result = {"ok": True}'}
"""


@pytest_asyncio.fixture(scope="module")
async def url(fleet):
    import aiohttp
    async with aiohttp.ClientSession() as http:
        await register(http, fleet.router_url, PLAYBOOK)
    return fleet.router_url


# --- POST /api/execute/batch ---------------------------------------------------------------

async def test_execute_batch_starts_each_item_and_reports_bad_ones(url, http):
    items = [{"path": "tests/noetl_routes", "payload": {"n": 1}}, {"path": "tests/no_such_playbook"},
             {"path": "tests/noetl_routes", "execution_pool": "bad pool!"}, {"path": "tests/noetl_routes"}]
    async with http.post(f"{url}/api/execute/batch", json={"executions": items}) as r:
        body = await r.json()
        assert r.status == 200, body
    assert (body["count"], body["started"], body["failed"], body["duplicates"]) == (4, 2, 2, 0)
    results = body["results"]
    assert [x["index"] for x in results] == [0, 1, 2, 3]
    assert [x["status"] for x in results] == ["started", "error", "error", "started"]
    assert "tests/no_such_playbook" in results[1]["error"] and results[1]["code"] == 404
    assert "execution_pool" in results[2]["error"] and "execution_id" not in results[1]
    shard = int(r.headers["X-Shard"])
    for item in (results[0], results[3]):
        eid = int(item["execution_id"])
        assert shard_for(eid, SHARDS) == shard  # the receiving shard mints ids it owns
        async with http.get(f"{url}/api/executions/{eid}/status") as s:
            assert s.status == 200 and s.headers["X-Shard"] == str(shard)


@pytest.mark.parametrize("body,status,fragment", [
    ({"executions": []}, 422, "length >= 1 - at `$.executions`"),  # BatchExecuteRequest's bounds
    ({"executions": "x"}, 422, "$.executions"),
    ({"executions": [{"path": 5}]}, 422, "$.executions[0].path"),
    ({}, 422, "executions"),
    ({"executions": [{"path": "tests/noetl_routes"}] * 1001}, 422, "length <= 1000"),
])
async def test_execute_batch_bad_input(url, http, body, status, fragment):
    async with http.post(f"{url}/api/execute/batch", json=body) as r:
        err = await r.json()
        assert r.status == status, err
        assert fragment in err["error"]


async def test_execute_batch_malformed_json_is_400(url, http):
    async with http.post(f"{url}/api/execute/batch", data=b"{nope",
                         headers={"Content-Type": "application/json"}) as r:
        assert r.status == 400 and "malformed JSON" in (await r.json())["error"]


# --- batch status / stream -------------------------------------------------------------------

async def _finish_by_batch(http, url, key: str | None) -> tuple[int, dict]:
    eid = await start(http, url, "tests/noetl_routes")
    command = await issued_command(http, url, eid)
    await claim(http, url, command)
    events = [{"name": "call.done", "node_name": "start", "command_id": str(command),
               "payload": {"result": {"ok": True}}},
              {"name": "command.completed", "node_name": "start", "command_id": str(command)}]
    headers = {"Idempotency-Key": key} if key else {}
    async with http.post(f"{url}/api/events/batch", json={"execution_id": str(eid), "worker_id": "hand",
                                                         "events": events}, headers=headers) as r:
        answer = await r.json()
        assert r.status == 202, answer
    return eid, answer


@pytest.mark.parametrize("key", [None, "k-status-1"])
async def test_batch_status_of_a_request_id_through_the_router(url, http, key):
    eid, answer = await _finish_by_batch(http, url, key)
    request_id = answer["request_id"]
    owner = shard_for(eid, SHARDS)
    assert shard_for(int(request_id), SHARDS) == owner  # minted by the owner, so it routes by hash
    async with http.get(f"{url}/api/events/batch/{request_id}/status") as r:
        body = await r.json()
        assert r.status == 200, body
        assert r.headers["X-Shard"] == str(owner)
    assert body["request_id"] == request_id and body["execution_id"] == str(eid)
    assert (body["state"], body["status"], body["error_code"]) == ("completed", "COMPLETED", None)
    assert body["idempotency_key"] == key and body["event_ids"] == answer["event_ids"]
    assert body["commands_generated"] == answer["commands_generated"] and body["updated_at"]
    async with http.get(f"{url}/api/events/batch/{request_id}/stream", params={"timeout_seconds": "5"}) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        text = await r.text()
    assert text.startswith("event: status\ndata: ") and text.endswith("\n\n")
    assert '"state":"completed"' in text and f'"request_id":"{request_id}"' in text


async def test_batch_status_of_unknown_and_bad_request_ids(url, http):
    unknown = mint_for_shard(1, SHARDS)
    async with http.get(f"{url}/api/events/batch/{unknown}/status") as r:
        assert r.status == 404 and r.headers["X-Shard"] == "1"
        assert str(unknown) in (await r.json())["error"]
    async with http.get(f"{url}/api/events/batch/{unknown}/stream") as r:
        assert r.status == 200 and '"state":"not_found"' in await r.text()
    # An event id that is not a batch's request id is not one either.
    eid = await start(http, url, "tests/noetl_routes")
    async with http.get(f"{url}/api/events/batch/{await issued_command(http, url, eid)}/status") as r:
        assert r.status == 404
    for path in ("/api/events/batch/abc/status", "/api/events/batch/12x/stream"):
        async with http.get(url + path) as r:
            assert r.status == 400 and "request id" in (await r.json())["error"], path
    for bad in ("abc", "0", "-1", "999999"):
        async with http.get(f"{url}/api/events/batch/{unknown}/stream", params={"timeout_seconds": bad}) as r:
            assert r.status == 400 and "timeout_seconds" in (await r.json())["error"], bad


# --- POST /api/executions/cleanup ------------------------------------------------------------

async def test_cleanup_cancels_stuck_executions_on_every_shard(fleet, url, http):
    # One stuck execution per shard (nothing runs them here), made to look 10 minutes old.
    aged: set[str] = set()
    fresh = await start(http, url, "tests/noetl_routes")
    while len({shard_for(int(e), SHARDS) for e in aged}) < SHARDS:
        eid = await start(http, url, "tests/noetl_routes")
        await on_owner(fleet, eid, "UPDATE noetl.execution SET created_at = now() - interval '10 minutes' "
                                   "WHERE execution_id = $1", eid)
        aged.add(str(eid))
    async with http.post(f"{url}/api/executions/cleanup", json={"older_than_minutes": 5, "dry_run": True}) as r:
        dry = await r.json()
        assert r.status == 200, dry
    assert aged <= set(dry["execution_ids"]) and str(fresh) not in dry["execution_ids"]
    assert dry["dry_run"] is True and dry["message"].startswith("[DRY RUN]")
    async with http.get(f"{url}/api/executions/{next(iter(aged))}/status") as r:
        assert (await r.json())["status"] != "CANCELLED"  # a dry run changes nothing
    async with http.post(f"{url}/api/executions/cleanup", json={"older_than_minutes": 5}) as r:
        done = await r.json()
        assert r.status == 200, done
    assert aged <= set(done["execution_ids"]) and done["cancelled_count"] == len(done["execution_ids"])
    assert sorted(done["shards"]) == [str(i) for i in range(SHARDS)] and "failed_shards" not in done
    assert sum(done["shards"].values()) == done["cancelled_count"]
    for eid in aged:
        async with http.get(f"{url}/api/executions/{eid}/status") as r:
            assert (await r.json())["status"] == "CANCELLED"
    async with http.get(f"{url}/api/executions/{fresh}/status") as r:
        assert (await r.json())["status"] == "RUNNING"
    async with http.post(f"{url}/api/executions/cleanup", json={"older_than_minutes": 5}) as r:
        again = await r.json()
    assert again["cancelled_count"] == 0 and again["execution_ids"] == []


@pytest.mark.parametrize("body,status,fragment", [
    ({"older_than_minutes": 0}, 422, "older_than_minutes"),
    # Found by fuzzing: past int4 the query overflowed, a 500 on every shard (503 from the router).
    ({"older_than_minutes": 10878043251165}, 422, "older_than_minutes must be between 1 and"),
    ({"older_than_minutes": 2**31}, 422, "older_than_minutes must be between 1 and"),
    ({"older_than_minutes": "x"}, 422, "$.older_than_minutes"),
    ({"dry_run": "yes"}, 422, "$.dry_run"),
    ({"limit": 0}, 422, "limit"),
    (b"{nope", 400, "malformed JSON"),
])
async def test_cleanup_bad_input(url, http, body, status, fragment):
    kwargs = {"data": body, "headers": {"Content-Type": "application/json"}} if isinstance(body, bytes) \
        else {"json": body}
    async with http.post(f"{url}/api/executions/cleanup", **kwargs) as r:
        err = await r.json()
        assert r.status == status, err
        assert fragment in err["error"]


# --- GET /api/executions/{id} paging ---------------------------------------------------------

async def test_execution_detail_pages_by_page_and_offset_with_totals(url, http):
    eid = await start(http, url, "tests/noetl_routes")
    command = await issued_command(http, url, eid)
    await claim(http, url, command)
    beats = [{"name": "command.heartbeat", "node_name": "start", "command_id": str(command)}] * 20
    async with http.post(f"{url}/api/events/batch", json={"execution_id": str(eid), "worker_id": "hand",
                                                         "events": beats}) as r:
        assert r.status == 202, await r.text()
    async with http.get(f"{url}/api/executions/{eid}", params={"page_size": "500"}) as r:
        everything = [e["event_id"] for e in (await r.json())["events"]]
    total = len(everything)
    assert everything == sorted(everything, key=int, reverse=True)  # newest first, as NoETL
    assert total > 20
    async with http.get(f"{url}/api/executions/{eid}", params={"page": "2", "page_size": "10"}) as r:
        body = await r.json()
        assert r.status == 200, body
    assert [e["event_id"] for e in body["events"]] == everything[10:20]
    assert body["pagination"] == {**body["pagination"], "page": 2, "page_size": 10, "total_events": total,
                                  "total_pages": -(-total // 10), "has_next": True, "has_prev": True,
                                  "offset": 10}
    async with http.get(f"{url}/api/executions/{eid}", params={"offset": "5", "limit": "7"}) as r:
        body = await r.json()
    assert [e["event_id"] for e in body["events"]] == everything[5:12]
    assert body["pagination"]["total_events"] == total and body["pagination"]["has_prev"] is True
    last_page = -(-total // 10)
    async with http.get(f"{url}/api/executions/{eid}", params={"page": str(last_page), "page_size": "10"}) as r:
        body = await r.json()
    assert [e["event_id"] for e in body["events"]] == everything[(last_page - 1) * 10:]
    assert body["pagination"]["has_next"] is False
    async with http.get(f"{url}/api/executions/{eid}/events", params={"page": "1", "page_size": "3"}) as r:
        body = await r.json()
    assert [e["event_id"] for e in body["events"]] == everything[:3] and body["pagination"]["has_prev"] is False
    # NoETL's since_event_id: only the events after it, still newest first, paged and counted.
    async with http.get(f"{url}/api/executions/{eid}",
                        params={"since_event_id": everything[9], "page_size": "4", "page": "2"}) as r:
        body = await r.json()
    assert [e["event_id"] for e in body["events"]] == everything[4:8]
    assert body["pagination"]["total_events"] == 9 and body["pagination"]["has_next"] is True
    # The fleet's key for the next, older page.
    async with http.get(f"{url}/api/executions/{eid}", params={"page_size": "4"}) as r:
        cursor = (await r.json())["pagination"]["next_before_event_id"]
    async with http.get(f"{url}/api/executions/{eid}", params={"before_event_id": cursor, "page_size": "4"}) as r:
        body = await r.json()
    assert cursor == everything[3] and [e["event_id"] for e in body["events"]] == everything[4:8]
    assert body["pagination"]["offset"] == 4 and body["pagination"]["total_events"] == total


@pytest.mark.parametrize("params,fragment", [
    ({"page": "0"}, "page"), ({"page": "x"}, "page"), ({"page_size": "abc"}, "page_size"),
    ({"page_size": "501"}, "page_size"), ({"offset": "-1"}, "offset"), ({"limit": "0"}, "limit"),
    ({"page": "2", "offset": "3"}, "page or offset"), ({"before_event_id": "5", "page": "2"}, "before_event_id"),
    ({"include_events": "maybe"}, "include_events"),
])
async def test_execution_detail_bad_paging_is_a_400_naming_it(url, http, params, fragment):
    eid = await start(http, url, "tests/noetl_routes")
    async with http.get(f"{url}/api/executions/{eid}", params=params) as r:
        err = await r.json()
        assert r.status == 400, err
        assert fragment in err["error"]


async def test_cleanup_path_is_not_parsed_as_an_execution_id(url, http):
    async with http.post(f"{url}/api/executions/cleanup", json={"older_than_minutes": 100000}) as r:
        assert r.status == 200 and (await r.json())["cancelled_count"] == 0
