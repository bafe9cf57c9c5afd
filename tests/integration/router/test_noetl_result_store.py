"""NoETL's result store through the router, on the shard that owns the execution: PUT, resolve,
by step, list, delete, stats (summed over shards), the legacy /api/temp alias; large results kept
out of the event log (the shard stores them and logs a reference); a Rust worker's reference to a
result it PUT; results deleted with the stuck-execution cleanup. No worker runs: the test plays it."""

from __future__ import annotations

import hashlib

import msgspec
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
metadata: {name: results, path: tests/noetl_results}
workflow:
  - step: start
    tool: {kind: python, code: 'result = {"ok": True}'}
"""
BIG = {"rows": [{"i": i, "text": "x" * 100} for i in range(1500)]}  # ~170 KiB of JSON, over NoETL's 100 KiB


@pytest_asyncio.fixture(scope="module")
async def url(fleet):
    import aiohttp
    async with aiohttp.ClientSession() as http:
        await register(http, fleet.router_url, PLAYBOOK)
    return fleet.router_url


async def _json(r):
    return await r.json(content_type=None)


async def test_put_resolve_list_and_delete_on_the_owning_shard(url, http):
    eid = await start(http, url, "tests/noetl_results")
    owner = str(shard_for(eid, SHARDS))
    data = {"columns": ["a"], "rows": [[1], [2]]}
    async with http.put(f"{url}/api/result/{eid}", json={"name": "fetch", "data": data, "scope": "execution",
                                                         "source_step": "fetch"}) as r:
        put = await r.json()
        assert r.status == 200, put
        assert r.headers["X-Shard"] == owner
    raw = msgspec.json.encode(data)
    assert put["ref"].startswith(f"noetl://execution/{eid}/result/fetch/")
    assert (put["store"], put["scope"], put["expires_at"]) == ("db", "execution", None)
    assert put["bytes"] == len(raw) and put["sha256"] == hashlib.sha256(raw).hexdigest()
    result_id = int(put["ref"].rsplit("/", 1)[1])
    assert shard_for(result_id, SHARDS) == int(owner)  # minted by the owner like every id it stores
    async with http.get(f"{url}/api/result/resolve", params={"ref": put["ref"]}) as r:
        assert r.status == 200 and r.headers["X-Shard"] == owner
        assert await r.json() == data
    async with http.get(f"{url}/api/result/{eid}/fetch") as r:
        assert r.status == 200 and await r.json() == data
    async with http.get(f"{url}/api/result/{eid}/fetch", params={"resolve": "false"}) as r:
        meta = await r.json()
        assert meta["ref"] == put["ref"] and meta["bytes"] == put["bytes"] and meta["name"] == "fetch"
    async with http.get(f"{url}/api/temp/{eid}/fetch") as r:  # NoETL's legacy alias
        assert r.status == 200 and await r.json() == data
    # A step-scoped and a permanent result next to it.
    async with http.put(f"{url}/api/result/{eid}", json={"name": "s1", "data": [1, 2], "scope": "step",
                                                         "ttl": "1h"}) as r:
        step_put = await r.json()
        assert r.status == 200 and step_put["expires_at"] is not None, step_put
    async with http.put(f"{url}/api/result/{eid}", json={"name": "keep", "data": None, "scope": "permanent"}) as r:
        keep = await r.json()
        assert r.status == 200, keep
    async with http.get(f"{url}/api/result/resolve", params={"ref": keep["ref"]}) as r:
        assert r.status == 200 and await r.json() is None
    async with http.get(f"{url}/api/result/{eid}/list") as r:
        listed = await r.json()
    assert listed["execution_id"] == str(eid) and listed["count"] == 3
    assert [x["name"] for x in listed["refs"]] == ["fetch", "s1", "keep"]
    async with http.get(f"{url}/api/result/{eid}/list", params={"scope": "step"}) as r:
        assert [x["name"] for x in (await r.json())["refs"]] == ["s1"]
    async with http.get(f"{url}/api/result/stats") as r:
        stats = await r.json()
        assert r.status == 200, stats
    assert stats["results"] >= 3 and sorted(stats["shards"]) == [str(i) for i in range(SHARDS)]
    assert stats["results"] == sum(s["results"] for s in stats["shards"].values())
    # bytes is a number on each shard (sum() in SQL is numeric, once sent as a string) and summed.
    assert all(isinstance(s["bytes"], int) for s in stats["shards"].values())
    assert stats["bytes"] == sum(s["bytes"] for s in stats["shards"].values()) >= put["bytes"]
    async with http.delete(f"{url}/api/result/{eid}/step/s1") as r:
        assert await r.json() == {"execution_id": str(eid), "deleted": 1, "scope": "step"}
    async with http.delete(f"{url}/api/result/{eid}") as r:
        assert await r.json() == {"execution_id": str(eid), "deleted": 1, "scope": "execution"}
    async with http.get(f"{url}/api/result/resolve", params={"ref": put["ref"]}) as r:
        assert r.status == 404 and "result not found" in (await r.json())["error"]
    async with http.get(f"{url}/api/result/resolve", params={"ref": keep["ref"]}) as r:
        assert r.status == 200  # permanent results survive execution cleanup


@pytest.mark.parametrize("body,status,fragment", [
    ({"data": 1}, 422, "name"),
    ({"name": "a"}, 422, "data"),
    # Checked on decode (the Struct's constraints, which the OpenAPI document states): 422 at the field.
    ({"name": "", "data": 1}, 422, "$.name"),
    ({"name": "x" * 513, "data": 1}, 422, "$.name"),
    ({"name": "a", "data": 1, "scope": "bogus"}, 422, "$.scope"),
    ({"name": "a", "data": 1, "store": "tape"}, 422, "$.store"),
    ({"name": "a", "data": 1, "ttl": "soon"}, 400, "ttl"),
    # Past the calendar the expiry overflowed: a 500 before ttl was bounded.
    ({"name": "a", "data": 1, "ttl": 10**15}, 400, "ttl must be at most"),
    ({"name": "a", "data": 1, "ttl": "99999999999y"}, 400, "ttl must be at most"),
    ({"name": 5, "data": 1}, 422, "$.name"),
    (b"{nope", 400, "malformed JSON"),
])
async def test_put_bad_input(url, http, body, status, fragment):
    eid = await start(http, url, "tests/noetl_results")
    kwargs = {"data": body, "headers": {"Content-Type": "application/json"}} if isinstance(body, bytes) \
        else {"json": body}
    async with http.put(f"{url}/api/result/{eid}", **kwargs) as r:
        err = await r.json()
        assert r.status == status, err
        assert fragment in err["error"]


async def test_result_routes_bad_ids_and_refs(url, http):
    ghost = mint_for_shard(2, SHARDS)
    cases = [
        ("PUT", f"/api/result/{ghost}", {"json": {"name": "a", "data": 1}}, 404, str(ghost)),
        ("PUT", "/api/result/abc", {"json": {"name": "a", "data": 1}}, 400, "'abc'"),
        ("GET", "/api/result/resolve", {}, 400, "ref"),
        ("GET", "/api/result/resolve", {"params": {"ref": "http://elsewhere/x"}}, 400, "ref"),
        ("GET", "/api/result/resolve", {"params": {"ref": "noetl://execution/12/result/x/abc"}}, 400, "result id"),
        ("GET", "/api/result/resolve", {"params": {"ref": f"noetl://execution/{ghost}/result/x/1"}}, 404, "not found"),
        ("GET", f"/api/result/{ghost}/list", {}, 404, str(ghost)),
        ("DELETE", f"/api/result/{ghost}", {}, 404, str(ghost)),
    ]
    for method, path, kwargs, status, fragment in cases:
        async with http.request(method, url + path, **kwargs) as r:
            err = await r.json()
            assert r.status == status, (path, err)
            assert fragment in err["error"], (path, err)
    eid = await start(http, url, "tests/noetl_results")
    for method, path, params, fragment in [("DELETE", f"/api/result/{eid}", {"scope": "permanent"}, "permanent"),
                                           ("DELETE", f"/api/result/{eid}", {"scope": "step"}, "step name"),
                                           ("DELETE", f"/api/result/{eid}", {"scope": "x"}, "Invalid scope"),
                                           ("GET", f"/api/result/{eid}/list", {"scope": "x"}, "Invalid scope"),
                                           ("GET", f"/api/result/{eid}/s", {"resolve": "maybe"}, "resolve")]:
        async with http.request(method, url + path, params=params) as r:
            err = await r.json()
            assert r.status == 400 and fragment in err["error"], (path, params, err)
    async with http.get(f"{url}/api/result/{eid}/nothing") as r:
        assert r.status == 404 and "nothing" in (await r.json())["error"]


async def _logged(http, url, eid: int, event_type: str) -> list[dict]:
    async with http.get(f"{url}/api/executions/{eid}/events", params={"event_type": event_type}) as r:
        return (await r.json())["events"]


async def _step_result(http, url, eid: int, step: str):
    async with http.get(f"{url}/api/executions/{eid}/status", params={"steps": "true"}) as r:
        body = await r.json()
        assert r.status == 200, body
    assert step in body["steps"], body
    return body["steps"][step]


async def _replay_matches(http, url, eid: int) -> None:
    async with http.get(f"{url}/api/replay/state", params={"execution_id": str(eid)}) as r:
        replay = await r.json()
        assert r.status == 200, replay
    assert replay["matches"], replay


async def test_a_large_result_is_stored_and_the_event_logs_a_reference(url, http):
    eid = await start(http, url, "tests/noetl_results")
    command = await issued_command(http, url, eid)
    await claim(http, url, command)
    events = [{"name": "call.done", "node_name": "start", "command_id": str(command), "payload": {"result": BIG}},
              {"name": "command.completed", "node_name": "start", "command_id": str(command)}]
    async with http.post(f"{url}/api/events/batch", json={"execution_id": str(eid), "worker_id": "hand",
                                                         "events": events}, headers={"Idempotency-Key": "big-1"}) as r:
        assert r.status == 202, await r.text()
    seen = await _step_result(http, url, eid, "start")
    (done,) = await _logged(http, url, eid, "call.done")
    result = done["result"]
    assert "rows" not in msgspec.json.encode(result).decode()  # the log holds a reference, not the data
    ref = result["reference"]
    # the execution's data keeps a stub of it: NoETL's `_ref` (what `kind: artifact` loads) and `_store`,
    # and no large field (engine.stored); templates load the rest through the reference
    assert seen == {"_ref": ref, "_store": "db"}
    assert ref["kind"] == "result_ref" and ref["meta"]["bytes"] == len(msgspec.json.encode(BIG))
    assert result["context"] == {"data": {"_ref": ref["ref"]}}
    async with http.get(f"{url}/api/result/resolve", params={"ref": ref["ref"]}) as r:
        assert r.status == 200 and await r.json() == BIG
    await _replay_matches(http, url, eid)  # replay reads the stored value back


async def test_a_small_result_stays_inline(url, http):
    eid = await start(http, url, "tests/noetl_results")
    command = await issued_command(http, url, eid)
    await claim(http, url, command)
    async with http.post(f"{url}/api/events/batch", json={"execution_id": str(eid), "worker_id": "hand", "events": [
            {"name": "call.done", "node_name": "start", "command_id": str(command), "payload": {"result": [1, 2]}}]}) as r:
        assert r.status == 202, await r.text()
    (done,) = await _logged(http, url, eid, "call.done")
    assert done["result"] == [1, 2]
    async with http.get(f"{url}/api/result/{eid}/list") as r:
        assert (await r.json())["count"] == 0


async def test_a_rust_worker_reference_to_a_result_it_put(url, http):
    eid = await start(http, url, "tests/noetl_results")
    command = await issued_command(http, url, eid)
    await claim(http, url, command, "rust-1")
    async with http.put(f"{url}/api/result/{eid}", json={"name": "start", "data": BIG, "scope": "execution",
                                                         "source_step": "start"}) as r:
        put = await r.json()
        assert r.status == 200, put
    reference = {"kind": "result_ref", "ref": put["ref"], "store": put["store"], "scope": put["scope"],
                 "meta": {"bytes": put["bytes"], "sha256": put["sha256"], "media_type": "application/json"}}
    call_done = {"execution_id": eid, "event_type": "call.done", "step": "start", "status": "COMPLETED",
                 "worker_id": "rust-1",
                 "context": {"command_id": str(command), "call_index": 0,
                             "result": {"status": "success", "context": {"data": {"_ref": put["ref"]}},
                                        "reference": reference}}}
    async with http.post(f"{url}/api/events", json=call_done) as r:
        assert r.status == 200, await r.text()
    async with http.post(f"{url}/api/events", json={"execution_id": eid, "event_type": "command.completed",
                                                    "step": "start", "status": "success", "worker_id": "rust-1",
                                                    "context": {"command_id": str(command), "status": "success"}}) as r:
        assert r.status == 200, await r.text()
    # resolved from the store for the engine, kept as a stub with the reference it came by
    assert await _step_result(http, url, eid, "start") == {"_ref": reference, "_store": put["store"]}
    async with http.get(f"{url}/api/result/resolve", params={"ref": put["ref"]}) as r:
        assert r.status == 200 and await r.json() == BIG
    await _replay_matches(http, url, eid)


async def test_a_reference_to_a_missing_result_is_refused(url, http):
    eid = await start(http, url, "tests/noetl_results")
    command = await issued_command(http, url, eid)
    await claim(http, url, command, "rust-2")
    ghost = f"noetl://execution/{eid}/result/start/{mint_for_shard(shard_for(eid, SHARDS), SHARDS)}"
    async with http.post(f"{url}/api/events", json={
            "execution_id": eid, "event_type": "call.done", "step": "start", "worker_id": "rust-2",
            "context": {"command_id": str(command), "call_index": 0,
                        "result": {"status": "success", "reference": {"kind": "result_ref", "ref": ghost}}}}) as r:
        err = await r.json()
        assert r.status == 422 and ghost in err["error"], err
    async with http.get(f"{url}/api/executions/{eid}/status") as r:
        assert (await r.json())["status"] == "RUNNING"  # nothing was written


async def test_stored_results_go_with_the_stuck_execution_cleanup(fleet, url, http):
    eid = await start(http, url, "tests/noetl_results")
    async with http.put(f"{url}/api/result/{eid}", json={"name": "n", "data": {"a": 1}}) as r:
        ref = (await r.json())["ref"]
    await on_owner(fleet, eid, "UPDATE noetl.execution SET created_at = now() - interval '1 day' "
                               "WHERE execution_id = $1", eid)
    async with http.post(f"{url}/api/executions/cleanup", json={"older_than_minutes": 600}) as r:
        body = await r.json()
        assert r.status == 200, body
    assert str(eid) in body["execution_ids"] and body["results_deleted"] >= 1
    async with http.get(f"{url}/api/result/resolve", params={"ref": ref}) as r:
        assert r.status == 404


async def test_the_worker_artifact_tool_puts_and_gets_through_the_router(url, http):
    """`kind: artifact` with the worker's own control-plane client: put answers NoETL's reference,
    get with that reference (or the `_ref` a step's render scope shows) answers the value itself."""
    from noetl_worker.client import ControlPlane
    from noetl_worker.tools import artifact
    from noetl_worker.tools.base import ToolContext, ToolError

    eid = await start(http, url, "tests/noetl_results")
    ctx = ToolContext(credentials=ControlPlane(url, http), execution_id=eid, step="keep")
    ref = await artifact.run({"action": "put"}, {"data": BIG, "name": "big"}, ctx)
    assert ref["kind"] == "result_ref" and ref["ref"].startswith(f"noetl://execution/{eid}/result/big/")
    assert ref["meta"]["bytes"] == len(msgspec.json.encode(BIG))
    assert await artifact.run({"action": "get"}, {"result_ref": ref}, ctx) == BIG
    assert await artifact.run({"action": "get", "result_ref": ref["ref"]}, {}, ctx) == BIG
    with pytest.raises(ToolError, match="it was empty"):
        await artifact.run({"action": "get"}, {"result_ref": ""}, ctx)
    missing = ref["ref"].rsplit("/", 1)[0] + "/" + str(mint_for_shard(shard_for(eid, SHARDS), SHARDS))
    with pytest.raises(ToolError, match="404"):
        await artifact.run({"action": "get"}, {"result_ref": missing}, ctx)
