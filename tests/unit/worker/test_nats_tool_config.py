"""`kind: nats` pure parts: which server and login a tool config names, and NoETL's value encoding."""

from __future__ import annotations

import pytest

from noetl_worker.tools.base import ToolContext, ToolError
from noetl_worker.tools.base import json_or_text as decoded
from noetl_worker.tools.nats_tool import connection, encoded, redacted


def ctx() -> ToolContext:
    return ToolContext(credentials=None, execution_id=1, step="s")  # type: ignore[arg-type]


async def test_inline_auth_fields_in_each_spelling_and_the_tools_own_url_wins():
    got = await connection({"auth": {"server": "nats://a:4222", "username": "u", "nats_password": "p"},
                            "nats_url": "nats://b:4222"}, ctx())
    assert got == {"url": "nats://b:4222", "user": "u", "password": "p"}
    assert await connection({"auth": {"servers": ["nats://a:1", "nats://b:2"], "token": "t"}}, ctx()) == {
        "url": "nats://a:1,nats://b:2", "token": "t"}


async def test_no_server_named_is_an_error_saying_where_to_put_one():
    with pytest.raises(ToolError, match="nats_url"):
        await connection({"operation": "kv_get"}, ctx())


def test_values_are_written_as_noetl_writes_them_and_read_back():
    assert encoded({"a": 1}) == b'{"a": 1}' and encoded("x") == b"x" and encoded(True) == b"True"
    assert decoded(b'{"a": 1}') == {"a": 1} and decoded(b"plain") == "plain" and decoded(b"") is None


def test_a_password_in_the_url_is_hidden_in_messages():
    assert redacted("nats://noetl:secret@host:4222") == "nats://noetl:***@host:4222"
    assert redacted("nats://host:4222") == "nats://host:4222"
