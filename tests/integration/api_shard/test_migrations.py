"""Migration runner against real Postgres: idempotent, race-safe, all-or-nothing, tamper-evident."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from noetl_common.db import Migration, MigrationError, applied_versions, apply_migrations, load_migrations

from .conftest import start_harness, stop_harness


async def _records(dsn: str) -> list[tuple[str, int]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT scope, version FROM noetl.schema_migrations ORDER BY scope, version")
        return [(r["scope"], r["version"]) for r in rows]
    finally:
        await conn.close()


async def test_applying_twice_records_each_once(database_factory):
    dbs = await database_factory(blank=True)
    conn = await asyncpg.connect(dbs.shard_dsn)
    try:
        first = await apply_migrations(conn, "shard")
        second = await apply_migrations(conn, "shard")
        assert [m.version for m in first] == [m.version for m in load_migrations("shard")]
        assert second == []
        assert await applied_versions(conn, "shard") == [m.version for m in load_migrations("shard")]
        tables = {r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'noetl'")}
        assert {"event", "command", "execution", "outbox", "transient", "execution_summary",
                "step_timeline", "schema_migrations"} <= tables
    finally:
        await conn.close()


async def test_both_scopes_can_share_one_database(database_factory):
    dbs = await database_factory(blank=True)
    conn = await asyncpg.connect(dbs.shard_dsn)
    try:
        await apply_migrations(conn, "shard")
        await apply_migrations(conn, "cluster")
        assert await apply_migrations(conn, "cluster") == []
    finally:
        await conn.close()
    expected = sorted([("cluster", m.version) for m in load_migrations("cluster")]
                      + [("shard", m.version) for m in load_migrations("shard")])
    assert await _records(dbs.shard_dsn) == expected


@pytest.mark.parametrize("runners", [2, 6])
async def test_concurrent_runners_apply_once(database_factory, runners):
    dbs = await database_factory(blank=True)
    conns = [await asyncpg.connect(dbs.cluster_dsn) for _ in range(runners)]
    try:
        results = await asyncio.gather(*(apply_migrations(c, "cluster") for c in conns))
    finally:
        for c in conns:
            await c.close()
    # Exactly one runner did the work; the others found it done.
    assert sorted(len(r) for r in results) == [0] * (runners - 1) + [len(load_migrations("cluster"))]
    assert await _records(dbs.cluster_dsn) == [("cluster", m.version) for m in load_migrations("cluster")]


async def test_two_shards_starting_at_once_share_the_cluster_database(database_factory):
    first_dbs = await database_factory(blank=True)
    second_dbs = await database_factory(blank=True)
    shared_cluster = type(second_dbs)(second_dbs.admin_dsn, second_dbs.shard_dsn, first_dbs.cluster_dsn,
                                      second_dbs.shard_name, first_dbs.cluster_name)
    harnesses = await asyncio.gather(start_harness(first_dbs, shard_index=0, shard_count=2),
                                     start_harness(shared_cluster, shard_index=1, shard_count=2))
    try:
        for h in harnesses:
            assert (await h.client.get("/readyz")).status == 200
        assert await _records(first_dbs.cluster_dsn) == [("cluster", m.version) for m in load_migrations("cluster")]
        assert await harnesses[0].count("shard_map") == 1
    finally:
        for h in harnesses:
            await stop_harness(h)


async def test_a_failing_migration_rolls_back_the_whole_run(database_factory):
    dbs = await database_factory(blank=True)
    broken = [Migration(1, "ok", "CREATE TABLE noetl.first_table (id int);"),
              Migration(2, "broken", "CREATE TABLE noetl.second_table (id int); SELECT * FROM no_such_table;")]
    conn = await asyncpg.connect(dbs.shard_dsn)
    try:
        with pytest.raises(MigrationError, match=r"shard migration 0002_broken failed"):
            await apply_migrations(conn, "shard", broken)
        exists = await conn.fetchval("SELECT to_regclass('noetl.first_table') IS NOT NULL")
        assert exists is False  # migration 1 was rolled back with 2
        assert await conn.fetchval("SELECT to_regclass('noetl.schema_migrations')") is None
    finally:
        await conn.close()


async def test_an_edited_applied_migration_is_refused(database_factory):
    dbs = await database_factory(blank=True)
    conn = await asyncpg.connect(dbs.shard_dsn)
    try:
        await apply_migrations(conn, "shard", [Migration(1, "t", "CREATE TABLE noetl.t (id int);")])
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await apply_migrations(conn, "shard", [Migration(1, "t", "CREATE TABLE noetl.t (id bigint);")])
        # A new number is fine.
        applied = await apply_migrations(conn, "shard", [Migration(1, "t", "CREATE TABLE noetl.t (id int);"),
                                                         Migration(2, "u", "ALTER TABLE noetl.t ADD COLUMN v int;")])
        assert [m.version for m in applied] == [2]
    finally:
        await conn.close()


async def test_an_edit_declaring_the_applied_text_equivalent_is_accepted(database_factory):
    """`-- replaces sha256:<old>` lets an edit that matters only where it was not applied yet
    (0007's prepared path) start on databases that applied the old text; nothing else passes."""
    dbs = await database_factory(blank=True)
    conn = await asyncpg.connect(dbs.shard_dsn)
    try:
        old = Migration(1, "t", "CREATE TABLE noetl.t (id int);")
        await apply_migrations(conn, "shard", [old])
        edited = Migration(1, "t", f"-- replaces sha256:{old.checksum}\nCREATE TABLE IF NOT EXISTS noetl.t (id int);")
        assert await apply_migrations(conn, "shard", [edited]) == []
        other = Migration(1, "t", f"-- replaces sha256:{'0' * 64}\nCREATE TABLE IF NOT EXISTS noetl.t (id int);")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await apply_migrations(conn, "shard", [other])
    finally:
        await conn.close()


async def test_schema_rules_hold(database_factory):
    """A few constraints later issues rely on: event append-only and unique ids, status checks."""
    dbs = await database_factory(blank=True)
    conn = await asyncpg.connect(dbs.shard_dsn)
    try:
        await apply_migrations(conn, "shard")
        await conn.execute("INSERT INTO noetl.event (execution_id, event_id, event_type) VALUES (1, 10, 'x')")
        with pytest.raises(asyncpg.UniqueViolationError):  # unique within its execution (the partition key)
            await conn.execute("INSERT INTO noetl.event (execution_id, event_id, event_type) VALUES (1, 10, 'y')")
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await conn.execute("UPDATE noetl.event SET status = 'y' WHERE event_id = 10")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("INSERT INTO noetl.command (command_id, execution_id, step, tool_kind, status) "
                               "VALUES (1, 1, 's', 'python', 'BOGUS')")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("INSERT INTO noetl.outbox (id, subject, payload, status) VALUES (1, 's', '{}', 'x')")
        has_sequences = await conn.fetchval("SELECT count(*) FROM pg_sequences WHERE schemaname = 'noetl'")
        assert has_sequences == 0  # ids are app-minted
    finally:
        await conn.close()
