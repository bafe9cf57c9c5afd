"""A command is announced by its shard as its commit goes out, ahead of the outbox relay, which stays
the guarantee: with the publisher stopped an execution still runs, and once the publisher is back
the row is gone without a second message (the shard deletes a row JetStream acknowledged with the
next claim; a copy relayed anyway would be dropped as a duplicate): one message per command."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import asyncpg
import nats

from noetl_common.streams import COMMANDS_STREAM

from .conftest import own_fleet, register, wait_terminal

PLAYBOOK = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: prompt, path: tests/prompt_announce}
workflow:
  - step: start
    tool: {kind: python, code: "result = {'ok': True}"}
"""


async def _outbox_pending(http: aiohttp.ClientSession, shard_url: str, token: str) -> int:
    async with http.get(f"{shard_url}/api/internal/shard/status",
                        headers={"Authorization": f"Bearer {token}"}) as r:
        return (await r.json())["outbox_pending"]


async def test_commands_reach_workers_without_the_relay_and_are_published_once():
    async with own_fleet("noetl-prompt-announce-", 1, workers=1) as fleet, \
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        await register(http, fleet.router, PLAYBOOK)
        async with http.get(f"{fleet.url_of('api-shard-0')}/api/health") as r:
            assert (await r.json())["nats"] == "connected"
        publisher = fleet.spec("outbox-publisher")
        fleet.supervisor.stop(publisher.name)
        async with http.post(f"{fleet.router}/api/execute", json={"path": "tests/prompt_announce"}) as r:
            eid = (await r.json())["execution_id"]
        # Only the shard's own announcement can have reached the worker: the relay is down.
        status = await wait_terminal(http, fleet.router, eid, timeout=20)
        assert status["status"] == "COMPLETED", status
        shard_url = fleet.url_of("api-shard-0")
        assert await _outbox_pending(http, shard_url, fleet.token) > 0  # the relay's copy still waits

        fleet.supervisor.spawn(publisher)
        await fleet.supervisor.wait_ready(publisher.name)
        for _ in range(100):
            if await _outbox_pending(http, shard_url, fleet.token) == 0:
                break
            await asyncio.sleep(0.2)
        assert await _outbox_pending(http, shard_url, fleet.token) == 0

        nc = await nats.connect(fleet.spec("router").env["NOETL_NATS_URL"])
        try:
            info = await nc.jetstream().stream_info(COMMANDS_STREAM, subjects_filter=f"noetl.commands.*.{eid}")
        finally:
            await nc.close()
        assert sum((info.state.subjects or {}).values()) == 1, info.state.subjects  # not relayed a second time
        async with http.get(f"{shard_url}/metrics") as r:
            metrics = await r.text()
        assert 'noetl_command_announce_total{outcome="published",shard="0"} 1.0' in metrics, metrics[-2000:]


async def _announced(sub) -> dict:
    msg = await sub.next_msg(timeout=10)
    return json.loads(msg.data)


async def _outbox_held(conn: asyncpg.Connection):
    """A transaction holding the outbox table: the shard's next write waits on it, uncommitted."""
    held = conn.transaction()
    await held.start()
    await conn.execute("LOCK TABLE noetl.outbox IN ACCESS EXCLUSIVE MODE")
    return held


async def test_a_command_is_announced_while_its_commit_runs_and_its_claim_waits_for_the_outcome():
    """The announcement goes out with the write, before the commit: a claim that arrives first
    waits for the transaction, then gets the command; if the transaction fails, the command never
    existed and the claim is a 404 (a worker drops the message)."""
    async with own_fleet("noetl-announce-early-", 1, workers=0) as fleet, \
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        await register(http, fleet.router, PLAYBOOK)
        shard_url = fleet.url_of("api-shard-0")
        nc = await nats.connect(fleet.spec("router").env["NOETL_NATS_URL"])
        sub = await nc.subscribe("noetl.commands.>")
        blocker = await asyncpg.connect(fleet.shard_dsns[0])
        admin = await asyncpg.connect(fleet.shard_dsns[0])

        async def claim(command_id: str) -> tuple[int, dict]:
            async with http.post(f"{shard_url}/api/commands/{command_id}/claim", json={"worker_id": "w-test"}) as r:
                return r.status, await r.json()

        async def execute() -> tuple[int, dict]:
            async with http.post(f"{shard_url}/api/execute", json={"path": "tests/prompt_announce"}) as r:
                return r.status, await r.json()

        try:
            # The shard's write waits on this lock: it has not committed when the announcement arrives.
            blocked = await _outbox_held(blocker)
            started = asyncio.create_task(execute())
            note = await _announced(sub)
            claimed = asyncio.create_task(claim(str(note["event_id"])))
            await asyncio.sleep(0.5)
            assert not started.done() and not claimed.done()  # the claim waits for the transaction
            await blocked.commit()
            status, body = await started
            assert status == 200, body
            status, command = await claimed
            assert status == 200, command
            assert str(command["execution_id"]) == str(note["execution_id"]) == str(body["execution_id"])

            # Announced, then the transaction fails: the claim finds nothing.
            blocked = await _outbox_held(blocker)
            started = asyncio.create_task(execute())
            note = await _announced(sub)
            claimed = asyncio.create_task(claim(str(note["event_id"])))
            while not started.done():  # the write is resent alone after a failed group: cancel each
                await admin.execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
                                    "WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()")
                await asyncio.sleep(0.1)
            await blocked.rollback()
            status, body = await started
            assert status == 503 and body["code"] == "db_busy", body  # nothing was written; retry
            status, answer = await claimed
            assert status == 404, answer
            async with http.get(f"{shard_url}/metrics") as r:
                metrics = await r.text()
            for outcome in ("committed", "failed"):  # both claims came first and waited
                assert f'noetl_command_claim_early_total{{outcome="{outcome}",shard="0"}} 1.0' in metrics, outcome
        finally:
            await blocker.close()
            await admin.close()
            await nc.close()
