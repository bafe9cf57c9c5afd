"""`history prepare`'s inputs (no database): where the DSNs come from, and what of them is printed."""

from __future__ import annotations

import pytest

from noetl_ops.errors import OpsError
from noetl_ops.prepare import database_of, dsns


def test_dsns_come_from_flags_then_files_else_the_environment(tmp_path):
    f = tmp_path / "shard-1-dsn"
    f.write_text("postgresql://u:secret@db1:5433/noetl_shard_1\n")
    assert dsns(["postgresql://db0/s0"], [f], {}) == ["postgresql://db0/s0", "postgresql://u:secret@db1:5433/noetl_shard_1"]
    assert dsns(None, None, {"NOETL_SHARD_DSN": "postgresql://db/s"}) == ["postgresql://db/s"]
    with pytest.raises(OpsError, match="no shard database"):
        dsns(None, None, {})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(OpsError, match="is empty"):
        dsns(None, [tmp_path / "empty"], {})


def test_a_dsn_is_named_without_its_credentials():
    assert database_of("postgresql://u:secret@db1:5433/noetl_shard_1", 0) == "db1:5433/noetl_shard_1"
    assert database_of("postgres://db0/noetl_shard_0", 0) == "db0:5432/noetl_shard_0"
    assert database_of("host=db0 password=secret dbname=x", 2) == "database #3"
