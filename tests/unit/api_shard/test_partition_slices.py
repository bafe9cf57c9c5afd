"""Slice planning and the history settings (pure)."""

from __future__ import annotations

import pytest

from noetl_common.config import ConfigError, Env, path_days
from noetl_common.ids import timestamp_ms
from noetl_api_shard.store.partitions import _parse_bound, id_at, planned

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_765_000_000_000  # some instant after the snowflake epoch


def test_slices_are_contiguous_aligned_and_reach_past_the_horizon():
    after = id_at(T0 + 5 * HOUR + 123)  # the migration's bound: mid-day
    out = planned(after, now_ms=T0 + 6 * HOUR, slice_ms=DAY, ahead=2)
    assert out[0].lower == after  # the first slice is short: from the bound to the next day
    assert all(a.upper == b.lower for a, b in zip(out, out[1:]))
    assert all(timestamp_ms(s.upper) % DAY == 0 for s in out)
    assert timestamp_ms(out[-1].upper) >= T0 + 6 * HOUR + 2 * DAY
    assert len({s.name for s in out}) == len(out)


def test_nothing_to_plan_when_slices_already_reach_ahead():
    assert planned(id_at(T0 + 3 * DAY), now_ms=T0, slice_ms=DAY, ahead=2) == []


def test_partition_bounds_are_read_from_the_catalog_text():
    assert _parse_bound("FOR VALUES FROM (MINVALUE) TO ('42')") == (None, 42)
    assert _parse_bound("FOR VALUES FROM ('7') TO ('42')") == (7, 42)
    assert _parse_bound("DEFAULT") is None


def test_path_days_parse_and_reject():
    assert path_days(Env({"X": "a/b=7, c=0.5"}), "X") == {"a/b": 7.0, "c": 0.5}
    assert path_days(Env({}), "X") == {}
    for bad in ("a/b", "a=0", "=3", "a=x"):
        with pytest.raises(ConfigError, match="X must be path=days"):
            path_days(Env({"X": bad}), "X")
