"""Pool resolution and command subjects, as NoETL's servers and workers agree on them."""

from __future__ import annotations

import pytest

from noetl_common.pools import command_subject, resolve_pool, valid_pool


@pytest.mark.parametrize("execution_pool, path, pool", [
    ("gpu", "system/maintenance", "gpu"),          # the request's pool first
    (None, "system/maintenance", "system"),
    (None, "/system/cleanup", "system"),           # a leading slash is ignored
    (None, "subscription/feed", "subscription"),
    (None, "examples/hello", "shared"),
    (None, "systematic/x", "shared"),              # a prefix is a path segment, not a string start
    (None, None, "shared"),
])
def test_pool_precedence(execution_pool, path, pool):
    assert resolve_pool(execution_pool, path) == pool


def test_subjects_including_the_sharded_system_form():
    assert command_subject("shared", 42) == "noetl.commands.shared.42"
    assert command_subject("system", 325, shard_route=True, shard_count=8) == "noetl.commands.system.shard.4.325"
    assert command_subject("system", 325, shard_route=True, shard_count=1) == "noetl.commands.system.325"
    assert command_subject("shared", 325, shard_route=True, shard_count=8) == "noetl.commands.shared.325"


def test_pool_names_are_one_subject_token():
    assert valid_pool("shared") and valid_pool("gpu-1") and valid_pool("a_b")
    assert not valid_pool("a.b") and not valid_pool("") and not valid_pool("x>") and not valid_pool("a b")
