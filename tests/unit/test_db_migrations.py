"""Migration discovery (no database): ordering, naming rules, duplicates."""

from __future__ import annotations

import uuid

import pytest

from noetl_common.db import MigrationError, load_migrations


def _package(tmp_path, monkeypatch, files: dict[str, str]) -> str:
    name = f"fake_migrations_{uuid.uuid4().hex}"  # unique: imported packages are cached
    root = tmp_path / name
    scope = root / "shard"
    scope.mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (scope / "__init__.py").write_text("")
    for file_name, sql in files.items():
        (scope / file_name).write_text(sql)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_shipped_migrations_are_numbered_from_one_without_gaps():
    # 0006 is reserved for a shard migration on a parallel branch (0007_result_store was numbered
    # past it to avoid a clash); once both are merged this set is contiguous again.
    reserved = {"shard": {6}, "cluster": set()}
    for scope in ("shard", "cluster"):
        versions = [m.version for m in load_migrations(scope)]
        expected = [v for v in range(1, len(versions) + len(reserved[scope]) + 1) if v not in reserved[scope]]
        assert versions == expected or versions == list(range(1, len(versions) + 1)), scope
        assert all(m.sql.strip() for m in load_migrations(scope))


def test_migrations_load_in_numeric_order(tmp_path, monkeypatch):
    pkg = _package(tmp_path, monkeypatch, {"0010_c.sql": "c", "0002_b.sql": "b", "0001_a.sql": "a", "README": "x"})
    assert [(m.version, m.name) for m in load_migrations("shard", pkg)] == [(1, "a"), (2, "b"), (10, "c")]


@pytest.mark.parametrize("files,fragment", [
    ({"0001_a.sql": "a", "0001_b.sql": "b"}, "share number 0001"),
    ({"1_a.sql": "a"}, "NNNN_lower_snake.sql"),
    ({"0001-A.sql": "a"}, "NNNN_lower_snake.sql"),
])
def test_malformed_sets_are_rejected(tmp_path, monkeypatch, files, fragment):
    pkg = _package(tmp_path, monkeypatch, files)
    with pytest.raises(MigrationError, match=fragment):
        load_migrations("shard", pkg)


def test_unknown_scope_is_rejected():
    with pytest.raises(MigrationError, match="unknown migration scope"):
        load_migrations("tenant")


def test_checksum_tracks_the_sql_text():
    from noetl_common.db import Migration

    assert Migration(1, "a", "x").checksum != Migration(1, "a", "y").checksum
    assert repr(Migration(1, "a", "x" * 1000)) == "Migration(0001_a)"
