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
    for scope in ("shard", "cluster"):
        versions = [m.version for m in load_migrations(scope)]
        assert versions == list(range(1, len(versions) + 1)), scope
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


def test_0007_declares_the_text_shards_applied_before_its_prepared_path():
    """Shards already past 0007 recorded the checksum of its first text; the edit that reads the
    pre-step's bound declares it, so they still start (migrations_runner)."""
    (m,) = [m for m in load_migrations("shard") if m.version == 7]
    assert m.replaces == {"071f1abb9bcaaf8f174aebfa66118cd7dcafe67fdbd88a8edc5c3e8f648c9ac8"}
    assert m.checksum not in m.replaces
