"""A tool's `output:` result tier: when a result goes to the store instead of the event."""

from __future__ import annotations

import pytest

from noetl_worker.result_tiers import budget
from noetl_worker.tools.base import ToolError


def test_inline_max_bytes_or_a_store_kind_sets_the_limit_and_nothing_keeps_results_inline():
    assert budget({"output": {"store": {"kind": "kv"}, "inline_max_bytes": 0}}) == 0
    assert budget({"output": {"inline_max_bytes": 2048}}) == 2048
    assert budget({"output": {"store": {"kind": "object"}}}) == 0
    assert budget({"output": {"store": {"kind": "inline"}}}) is None
    assert budget({"query": "SELECT 1"}) is None


@pytest.mark.parametrize("bad", [-1, "10", True, 1.5])
def test_a_bad_limit_is_the_steps_error_naming_the_field(bad):
    with pytest.raises(ToolError, match="output.inline_max_bytes"):
        budget({"output": {"inline_max_bytes": bad}})
