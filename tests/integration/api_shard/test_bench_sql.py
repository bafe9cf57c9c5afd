"""The benches' own SQL against a real shard schema. `make bench` and `make soak` are not in CI, and
both broke silently when the schema moved (the execution table became partitioned): these keep
their queries honest in `make test`."""

from __future__ import annotations

from bench.sharded_bench import seed_history
from bench.soak import table_bytes


async def test_soak_reads_a_size_for_every_table_plain_or_partitioned(shard_app):
    async with shard_app.shard.acquire() as conn:
        sizes = await table_bytes(conn)
        kinds = {r["relname"]: r["relkind"] for r in await conn.fetch(
            "SELECT c.relname, c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'noetl' AND c.relkind IN ('r', 'p') AND NOT c.relispartition")}
    assert {"r", "p"} <= set(kinds.values())  # both kinds are there to be measured
    assert sizes.keys() == kinds.keys()
    assert all(isinstance(size, int) and size > 0 for size in sizes.values()), sizes


async def test_the_sharded_bench_seeds_finished_executions_into_the_shard(shard_app):
    await seed_history([shard_app.dbs.shard_dsn], 50)
    assert await shard_app.count("execution", "shard") == 50
    assert await shard_app.shard.fetchval(
        "SELECT count(*) FROM noetl.execution_summary WHERE status = 'COMPLETED'") == 50
