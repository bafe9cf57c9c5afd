"""Catalog routes against real Postgres: register (plain/base64, versions, locking, validation),
list, resource, ui_schema; every rejected request leaves the table untouched."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
import yaml

from .playbooks import HELLO, WITH_END, b64, playbook


async def register(client, content, **extra):
    return await client.post("/api/catalog/register", json={"content": content, **extra})


async def test_register_plain_yaml(shard_app):
    resp = await register(shard_app.client, HELLO)
    body = await resp.json()
    assert resp.status == 200, body
    assert body["status"] == "success"
    assert body["path"] == "tests/hello_world" and body["version"] == 1 and body["kind"] == "Playbook"
    assert body["message"] == "Resource 'tests/hello_world' version '1' registered."
    assert isinstance(body["catalog_id"], str) and body["catalog_id"].isdigit()
    row = await shard_app.cluster.fetchrow("SELECT * FROM noetl.catalog WHERE catalog_id = $1",
                                           int(body["catalog_id"]))
    assert row["path"] == "tests/hello_world" and row["version"] == 1 and row["kind"] == "Playbook"


async def test_register_base64_like_the_cli(shard_app):
    resp = await register(shard_app.client, b64(HELLO), resource_type="Playbook")
    body = await resp.json()
    assert resp.status == 200, body
    entry = await (await shard_app.client.post("/api/catalog/resource", json={"path": "tests/hello_world"})).json()
    assert "greeting: hi" in entry["content"]  # stored decoded, not as base64


async def test_versions_increase_per_path(shard_app):
    versions = []
    for _ in range(3):
        versions.append((await (await register(shard_app.client, HELLO)).json())["version"])
    other = await (await register(shard_app.client, playbook("tests/other"))).json()
    assert versions == [1, 2, 3]
    assert other["version"] == 1


async def test_concurrent_registers_never_collide(shard_app):
    responses = await asyncio.gather(*(register(shard_app.client, HELLO) for _ in range(20)))
    bodies = [await r.json() for r in responses]
    assert all(r.status == 200 for r in responses), bodies
    assert sorted(b["version"] for b in bodies) == list(range(1, 21))
    assert len({b["catalog_id"] for b in bodies}) == 20
    assert await shard_app.count("catalog") == 20


async def test_path_falls_back_to_metadata_name(shard_app):
    body = await (await register(shard_app.client, WITH_END)).json()
    assert body["path"] == "with_end"


async def test_implicit_end_step_is_added(shard_app):
    body = await (await register(shard_app.client, HELLO)).json()
    entry = await (await shard_app.client.post("/api/catalog/resource",
                                               json={"catalog_id": body["catalog_id"]})).json()
    steps = [s["step"] for s in entry["payload"]["workflow"]]
    assert steps == ["start", "finish", "end"]
    # The stored YAML says the same, so a reader of `content` sees the same workflow.
    reparsed = yaml.safe_load(entry["content"])
    assert [s["step"] for s in reparsed["workflow"]] == ["start", "finish", "end"]
    assert reparsed["workflow"][1]["tool"]["code"] == 'x = 1\nresult = {"x": x}\n'
    assert entry["meta"]["implicit_end"] is True


async def test_existing_end_step_any_case_is_kept(shard_app):
    body = await (await register(shard_app.client, WITH_END)).json()
    entry = await (await shard_app.client.post("/api/catalog/resource",
                                               json={"catalog_id": int(body["catalog_id"])})).json()
    assert [s["step"] for s in entry["payload"]["workflow"]] == ["start", "End"]
    assert entry["content"] == WITH_END  # untouched when nothing was added


async def test_payload_keeps_document_key_order(shard_app):
    text = playbook("tests/ordered", extra_steps="    set: {ctx.z: 1, ctx.a: 2, ctx.m: 3}\n")
    body = await (await register(shard_app.client, text)).json()
    entry = await (await shard_app.client.post("/api/catalog/resource", json={"catalog_id": body["catalog_id"]})).json()
    assert list(entry["payload"]["workflow"][0]["set"]) == ["ctx.z", "ctx.a", "ctx.m"]


BAD_DOCUMENTS = [
    ("apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: x\n", "invalid YAML"),
    ("workflow:\n  - step: start\n   tool: oops\n", "invalid YAML"),
    ("- just\n- a list\n", "must be a YAML mapping"),
    # No step named `start` is NoETL's "first step is the entry" (registers); an entry_step naming no step does not.
    (playbook("bad/no_entry").replace("workflow:", "executor: {spec: {entry_step: begin}}\nworkflow:"),
     "executor.spec.entry_step 'begin' is not a step of this playbook"),
    (playbook("bad/target", extra_steps="    next: {arcs: [{step: nowhere}]}\n"),
     "step 'start': next.arcs[0].step 'nowhere' is not a step of this playbook"),
    (playbook("bad/api").replace("noetl.io/v2", "noetl.io/v1"), "apiVersion must be 'noetl.io/v2'"),
    (playbook("bad/dupe", extra_steps="  - step: start\n    tool: {kind: noop}\n"), "step 'start': duplicate step name"),
    (playbook("bad/tool").replace("    tool: {kind: noop}\n", ""), "step 'start': tool is required"),
    ("apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: x}\nworkflow: []\n", "workflow is required"),
    ("apiVersion: noetl.io/v2\nkind: Playbook\nworkflow:\n  - {step: start, tool: {kind: noop}}\n",
     "metadata.path or metadata.name"),
    ("apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: x}\nworkload: [1]\n"
     "workflow:\n  - {step: start, tool: {kind: noop}}\n", "workload must be a mapping"),
]


@pytest.mark.parametrize("content,fragment", BAD_DOCUMENTS)
async def test_invalid_documents_are_422_and_write_nothing(shard_app, content, fragment):
    for payload in (content, b64(content)):
        resp = await register(shard_app.client, payload)
        body = await resp.json()
        assert resp.status == 422, body
        assert fragment in body["error"], body["error"]
        assert body["status"] == 422
    assert await shard_app.count("catalog") == 0


@pytest.mark.parametrize("raw,status,fragment", [
    (b'{"content": "abc"', 400, "malformed JSON"),
    (b"not json at all", 400, "malformed JSON"),
    (b"", 400, "request body is empty"),
    (b'{"content": 42}', 422, "$.content"),
    (b'{"content": "x", "resource_type": ["Playbook"]}', 422, "$.resource_type"),
    (b'{"resource_type": "Playbook"}', 422, "`content`"),
    (b'[1, 2]', 422, "Expected `object`"),
])
async def test_bad_request_bodies(shard_app, raw, status, fragment):
    resp = await shard_app.client.post("/api/catalog/register", data=raw,
                                       headers={"Content-Type": "application/json"})
    body = await resp.json()
    assert resp.status == status, body
    assert fragment in body["error"]
    assert await shard_app.count("catalog") == 0


async def test_oversized_body_is_413_and_writes_nothing(shard_app):
    limit = shard_app.settings.http.max_body_bytes
    huge = HELLO + "# " + "x" * (limit + 10) + "\n"
    resp = await register(shard_app.client, huge)
    body = await resp.json()
    assert resp.status == 413
    assert str(limit) in body["error"] and body["code"] == "payload_too_large"
    assert await shard_app.count("catalog") == 0


async def test_non_playbook_kinds_are_stored_without_playbook_rules(shard_app):
    text = "apiVersion: noetl.io/v1\nkind: Subscription\nmetadata: {name: sub1, path: subs/one}\nspec: {x: 1}\n"
    body = await (await register(shard_app.client, text, resource_type="Subscription")).json()
    assert body["kind"] == "Subscription" and body["path"] == "subs/one"


async def test_list_returns_latest_versions_by_kind(shard_app):
    c = shard_app.client
    await register(c, HELLO)
    await register(c, HELLO)
    await register(c, playbook("tests/another"))
    await register(c, "kind: Subscription\nmetadata: {name: s, path: subs/s}\n")
    body = await (await c.post("/api/catalog/list", json={"resource_type": "Playbook"})).json()
    got = {(e["path"], e["version"]) for e in body["entries"]}
    assert got == {("tests/hello_world", 2), ("tests/another", 1)}
    # Case-insensitive on the kind, like the CLI's "playbook" vs "Playbook".
    lower = await (await c.post("/api/catalog/list", json={"resource_type": "playbook"})).json()
    assert {(e["path"], e["version"]) for e in lower["entries"]} == got
    every = await (await c.post("/api/catalog/list", json={"all_versions": True})).json()
    assert len(every["entries"]) == 4
    empty_body = await c.post("/api/catalog/list", data=b"")
    assert empty_body.status == 200 and len((await empty_body.json())["entries"]) == 3
    entry = body["entries"][0]
    assert set(entry) >= {"catalog_id", "path", "version", "kind", "content", "payload", "meta", "created_at"}


async def test_list_rejects_bad_types(shard_app):
    resp = await shard_app.client.post("/api/catalog/list", json={"resource_type": 7})
    assert resp.status == 422 and "$.resource_type" in (await resp.json())["error"]


async def test_resource_lookup_variants(shard_app):
    c = shard_app.client
    first = await (await register(c, HELLO)).json()
    second = await (await register(c, HELLO)).json()

    async def fetch(body):
        resp = await c.post("/api/catalog/resource", json=body)
        return resp.status, await resp.json()

    assert (await fetch({"path": "tests/hello_world"}))[1]["version"] == 2
    assert (await fetch({"path": "tests/hello_world", "version": "latest"}))[1]["version"] == 2
    assert (await fetch({"path": "tests/hello_world", "version": 1}))[1]["catalog_id"] == first["catalog_id"]
    assert (await fetch({"path": "tests/hello_world", "version": "1"}))[1]["version"] == 1
    assert (await fetch({"catalog_id": second["catalog_id"]}))[1]["version"] == 2
    assert (await fetch({"catalog_id": int(first["catalog_id"])}))[1]["version"] == 1
    status, body = await fetch({"path": "tests/hello_world", "version": 9})
    assert status == 404 and body["error"] == "Catalog entry not found"
    status, body = await fetch({"catalog_id": "12345"})
    assert status == 404
    status, body = await fetch({"catalog_id": "abc"})
    assert status == 400 and "catalog_id" in body["error"]
    status, body = await fetch({})
    assert status == 400 and "catalog_id or path is required" in body["error"]
    status, body = await fetch({"path": "tests/hello_world", "version": [1]})
    assert status == 422 and "$.version" in body["error"]


async def test_ui_schema_with_a_slashed_path(shard_app):
    await register(shard_app.client, HELLO)
    resp = await shard_app.client.get("/api/catalog/tests/hello_world/ui_schema")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["path"] == "tests/hello_world" and body["version"] == 1
    # NoETL's shape (its web UI draws the Run dialog from `kind`).
    assert {f["name"]: (f["kind"], f["default"]) for f in body["fields"]} == {
        "greeting": ("string", "hi"), "count": ("integer", 2), "ratio": ("number", 0.5), "enabled": ("boolean", True)}
    assert body["kind"] == "playbook" and body["title"] == "hello" and body["exposed_in_ui"] is False
    assert body["generated_at"] and "description_markdown" in body
    missing = await shard_app.client.get("/api/catalog/tests/nothing/here/ui_schema")
    assert missing.status == 404 and "tests/nothing/here" in (await missing.json())["error"]


async def test_playbook_content_and_registered_at(shard_app):
    """What NoETL's web UI reads: a playbook's YAML by catalog_id or path (its flow view), and
    meta.registered_at on list entries (its cards' "Updated")."""
    registered = await (await register(shard_app.client, HELLO)).json()
    for playbook_id in (registered["catalog_id"], "tests/hello_world"):
        resp = await shard_app.client.get("/api/catalog/playbook/content", params={"playbook_id": playbook_id})
        body = await resp.json()
        assert resp.status == 200, body
        assert body["catalog_id"] == registered["catalog_id"] and body["path"] == "tests/hello_world"
        assert yaml.safe_load(body["content"])["metadata"]["name"] == "hello"
    for params, status in (({}, 400), ({"playbook_id": "tests/none"}, 404), ({"playbook_id": "123"}, 404)):
        resp = await shard_app.client.get("/api/catalog/playbook/content", params=params)
        assert resp.status == status, params
    assert "playbook_id" in (await (await shard_app.client.get("/api/catalog/playbook/content")).json())["error"]
    entries = (await (await shard_app.client.post("/api/catalog/list", json={})).json())["entries"]
    assert datetime.fromisoformat(entries[0]["meta"]["registered_at"]) == datetime.fromisoformat(
        entries[0]["created_at"])


async def test_validation_error_names_the_path(shard_app):
    resp = await register(shard_app.client, playbook("bad/named", extra_steps="    next: {arcs: [{step: nowhere}]}\n"))
    body = await resp.json()
    assert body["error"] == ("register_resource: 'bad/named' is not a valid playbook: "
                             "step 'start': next.arcs[0].step 'nowhere' is not a step of this playbook")


async def test_large_playbook_under_the_limit_registers(shard_app):
    big = HELLO + "".join(f"# filler line {i:06d} {'y' * 80}\n" for i in range(1200))  # ~120 KB
    assert len(big) < shard_app.settings.http.max_body_bytes
    resp = await register(shard_app.client, big)
    assert resp.status == 200, await resp.text()
    bad = await register(shard_app.client, big.replace("apiVersion: noetl.io/v2", "apiVersion: noetl.io/v1"))
    assert bad.status == 422
    assert await shard_app.count("catalog") == 1


async def test_a_version_past_the_column_is_a_400(shard_app):
    # The version column is an integer: a larger one reached the query and was a 500.
    for call in (shard_app.client.post("/api/catalog/resource", json={"path": "tests/x", "version": 99999999999}),
                 shard_app.client.get("/api/catalog/tests/x/ui_schema", params={"version": "99999999999"})):
        resp = await call
        body = await resp.json()
        assert resp.status == 400 and "version must be between 1 and" in body["error"], body
