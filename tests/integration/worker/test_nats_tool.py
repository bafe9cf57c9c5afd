"""`kind: nats` against the suite's real embedded NATS (JetStream): key-value, object store and
publish with NoETL's result shapes, the server taken from the `auth` credential."""

from __future__ import annotations

import uuid

import nats
import pytest

from noetl_worker.tools import nats_tool
from noetl_worker.tools.base import ToolContext, ToolError


def ctx(plane) -> ToolContext:
    return ToolContext(credentials=plane, execution_id=1, step="nats_step", timeout_seconds=20)


@pytest.fixture
async def js(nats_url):
    nc = await nats.connect(nats_url)
    yield nc.jetstream()
    await nc.close()


async def test_kv_put_get_keys_delete_through_a_credential(nats_url, credentials, js):
    store, plane = credentials
    store.items["nats_credential"] = {"nats_url": nats_url}
    bucket = f"sessions_{uuid.uuid4().hex[:8]}"
    await js.create_key_value(bucket=bucket)
    base = {"auth": "nats_credential", "bucket": bucket, "key": "s1"}
    value = {"session_token": "s1", "user_id": 1, "is_active": True}

    put = await nats_tool.run({**base, "operation": "kv_put", "value": value}, {}, ctx(plane))
    assert put == {"status": "success", "bucket": bucket, "key": "s1", "revision": 1}
    assert (await (await js.key_value(bucket)).get("s1")).value == b'{"session_token": "s1", "user_id": 1, "is_active": true}'

    got = await nats_tool.run({**base, "operation": "kv_get"}, {}, ctx(plane))
    assert {k: got[k] for k in ("status", "bucket", "key", "value", "revision")} == {
        "status": "success", "bucket": bucket, "key": "s1", "value": value, "revision": 1}

    await nats_tool.run({**base, "key": "other", "operation": "kv_put", "value": "plain text"}, {}, ctx(plane))
    keys = await nats_tool.run({"auth": "nats_credential", "bucket": bucket, "operation": "kv_keys", "pattern": "s*"},
                               {}, ctx(plane))
    assert keys == {"status": "success", "bucket": bucket, "keys": ["s1"], "count": 1}

    deleted = await nats_tool.run({**base, "operation": "kv_delete"}, {}, ctx(plane))
    assert deleted == {"status": "success", "bucket": bucket, "key": "s1"}
    gone = await nats_tool.run({**base, "operation": "kv_get"}, {}, ctx(plane))
    assert gone == {"status": "not_found", "bucket": bucket, "key": "s1", "value": None}


async def test_a_missing_bucket_is_the_steps_error_naming_it(nats_url, credentials):
    _, plane = credentials
    with pytest.raises(ToolError, match="bucket 'no_such_bucket' does not exist"):
        await nats_tool.run({"nats_url": nats_url, "operation": "kv_get", "bucket": "no_such_bucket", "key": "k"},
                            {}, ctx(plane))


async def test_object_store_put_get_info_list_delete(nats_url, credentials, js):
    _, plane = credentials
    bucket = f"objects_{uuid.uuid4().hex[:8]}"
    await js.create_object_store(bucket=bucket)
    base = {"nats_url": nats_url, "bucket": bucket, "name": "report.txt"}
    put = await nats_tool.run({**base, "operation": "object_put", "data": "hello"}, {}, ctx(plane))
    assert {k: put[k] for k in ("status", "bucket", "name", "size")} == {
        "status": "success", "bucket": bucket, "name": "report.txt", "size": 5}
    assert put["digest"].startswith("SHA-256=")
    got = await nats_tool.run({**base, "operation": "object_get", "encoding": "base64"}, {}, ctx(plane))
    assert got == {"status": "success", "bucket": bucket, "name": "report.txt", "data": "aGVsbG8=", "size": 5}
    info = await nats_tool.run({**base, "operation": "object_info"}, {}, ctx(plane))
    assert (info["size"], info["digest"]) == (5, put["digest"])
    listed = await nats_tool.run({**base, "operation": "object_list"}, {}, ctx(plane))
    assert [o["name"] for o in listed["objects"]] == ["report.txt"]
    await nats_tool.run({**base, "operation": "object_delete"}, {}, ctx(plane))
    with pytest.raises(ToolError, match="no object 'report.txt'"):
        await nats_tool.run({**base, "operation": "object_get"}, {}, ctx(plane))


async def test_js_publish_acks_with_the_stream_and_sequence(nats_url, credentials, js):
    _, plane = credentials
    stream = f"T_{uuid.uuid4().hex[:8]}"
    await js.add_stream(name=stream, subjects=[f"{stream}.>"])
    out = await nats_tool.run({"nats_url": nats_url, "operation": "js_publish", "subject": f"{stream}.a",
                               "data": {"n": 1}}, {}, ctx(plane))
    assert out == {"status": "success", "stream": stream, "seq": 1, "duplicate": False}
    msg = await js.get_msg(stream, seq=1)
    assert msg.data == b'{"n": 1}'


async def test_an_unreachable_server_is_a_retryable_error_without_the_password(credentials):
    store, plane = credentials
    store.items["nats_down"] = {"url": "nats://noetl:s3cret@127.0.0.1:1", "user": "noetl"}
    with pytest.raises(ToolError) as caught:
        await nats_tool.run({"auth": "nats_down", "operation": "kv_get", "bucket": "b", "key": "k"}, {}, ctx(plane))
    assert "s3cret" not in str(caught.value) and "127.0.0.1:1" in str(caught.value)
    assert caught.value.details["retryable"] is True
