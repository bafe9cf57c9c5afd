"""Done-when of the sharded fleet: 60 executions through the router, and every event, command
and outbox row of each lives only in the database of shard_for(execution_id, 3); ids minted for
an execution (events, commands) hash to the same shard, and the router sends them there."""

from __future__ import annotations

import asyncio

import asyncpg

from noetl_common.sharding import shard_for

from .conftest import SHARDS, register, wait_terminal

PLAYBOOK = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: placed, path: tests/placed}
workflow:
  - step: start
    tool: {kind: python, code: "result = {'n': 1}"}
    next: [{step: end}]
  - step: end
    tool: {kind: python, code: "result = {'done': True}"}
"""
EXECUTIONS = 60


async def test_sixty_executions_live_only_on_their_owning_shard(live_fleet, http):
    await register(http, live_fleet.router, PLAYBOOK)

    async def start(i: int) -> str:
        async with http.post(f"{live_fleet.router}/api/execute",
                             json={"path": "tests/placed", "payload": {"i": i}}) as r:
            body = await r.json()
            assert r.status == 200, body
            assert int(r.headers["X-Shard"]) == shard_for(int(body["execution_id"]), SHARDS)
            return body["execution_id"]

    ids = [await start(i) for i in range(EXECUTIONS)]
    statuses = await asyncio.gather(*(wait_terminal(http, live_fleet.router, x) for x in ids))
    assert [s["status"] for s in statuses] == ["COMPLETED"] * EXECUTIONS
    owners = {int(x): shard_for(int(x), SHARDS) for x in ids}
    assert set(owners.values()) == set(range(SHARDS)), "round robin placement uses every shard"

    for shard, dsn in enumerate(live_fleet.shard_dsns):
        conn = await asyncpg.connect(dsn)
        try:
            tables = {}
            for table, id_column in (("event", "event_id"), ("command", "command_id"), ("outbox", "id")):
                rows = await conn.fetch(f"SELECT execution_id, {id_column} AS id FROM noetl.{table} "
                                        "WHERE execution_id = ANY($1::bigint[])", list(owners))
                tables[table] = rows
        finally:
            await conn.close()
        for table, rows in tables.items():
            here = {r["execution_id"] for r in rows}
            expected = {x for x, s in owners.items() if s == shard}
            if table == "outbox":  # published rows are deleted: what is left is still this shard's
                assert here <= expected, f"shard {shard} noetl.{table}: foreign executions"
            else:
                assert here == expected, f"shard {shard} noetl.{table}: wrong executions"
            foreign_ids = [r["id"] for r in rows if shard_for(r["id"], SHARDS) != shard]
            assert not foreign_ids, f"shard {shard} noetl.{table} holds ids hashing elsewhere: {foreign_ids[:3]}"
        # Event ids route by hash, no probing: the router sends a command id to this shard.
        sample = tables["command"][0]["id"]
        async with http.get(f"{live_fleet.router}/api/commands/{sample}") as r:
            assert r.status == 200, await r.text()
            assert r.headers["X-Shard"] == str(shard)
