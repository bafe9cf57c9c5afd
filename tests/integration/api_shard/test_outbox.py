"""The transactional outbox on a real shard database and its internal HTTP face."""

from __future__ import annotations

import asyncio

import msgspec
import nats

from noetl_api_shard.execution.keys import ANNOUNCER, ORCHESTRATOR, WAKEUPS
from noetl_api_shard.store import outbox as store
from noetl_api_shard.store.outbox import OutboxRow
from noetl_common.streams import COMMANDS_STREAM, ensure_streams
from noetl_common.wire.internal import CommandNotification

from .conftest import INTERNAL_TOKEN, start_harness, stop_harness

AUTH = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}


async def _enqueue(h, ids, subject="noetl.commands.shared.1"):
    """Through the shard's own write path (one transaction, its statement and its wake-ups)."""
    async with h.client.server.app[ORCHESTRATOR].transaction() as txn:
        for i in ids:
            txn.uow.notify(OutboxRow(id=i, execution_id=1, event_id=i, subject=subject, payload={"n": i}))


async def test_claim_publish_and_pending_count(shard_app):
    await _enqueue(shard_app, [11, 12, 13])
    r = await shard_app.client.get("/api/internal/outbox/pending-count", headers=AUTH)
    counts = await r.json()
    assert r.status == 200 and counts["pending"] == 3 and counts["oldest_age_seconds"] >= 0
    r = await shard_app.client.post("/api/internal/outbox/claim?limit=2", headers=AUTH)
    body = await r.json()
    assert r.status == 200 and [m["id"] for m in body["items"]] == [11, 12]
    assert body["items"][0]["payload"] == {"n": 11} and body["items"][0]["subject"] == "noetl.commands.shared.1"
    r = await shard_app.client.post("/api/internal/outbox/mark-published", json={"ids": [11, 12]}, headers=AUTH)
    assert (await r.json())["marked"] == 2
    r = await shard_app.client.post("/api/internal/outbox/claim?limit=10", headers=AUTH)
    assert [m["id"] for m in (await r.json())["items"]] == [13]
    # Published rows are gone: the table holds only what is still to publish.
    assert [r["id"] for r in await shard_app.shard.fetch("SELECT id FROM noetl.outbox")] == [13]


async def test_a_claim_deletes_what_was_published_since_the_last_one(shard_app):
    await _enqueue(shard_app, [51, 52, 53])
    first = await store.claim(shard_app.shard, limit=2)
    assert [m.id for m in first] == [51, 52]
    r = await shard_app.client.post("/api/internal/outbox/claim?limit=10", json={"published": [51, 52]},
                                    headers=AUTH)
    assert [m["id"] for m in (await r.json())["items"]] == [53]
    assert [r["id"] for r in await shard_app.shard.fetch("SELECT id FROM noetl.outbox")] == [53]


async def test_a_claim_reads_the_oldest_due_rows_without_writing(shard_app):
    await _enqueue(shard_app, list(range(100, 160)))
    results = await asyncio.gather(*(store.claim(shard_app.shard, limit=7) for _ in range(3)))
    # Claims lease nothing: each sees the oldest rows until they are reported published (one
    # publisher serves a shard; an overlap only re-publishes, and JetStream drops the copy).
    assert [[m.id for m in batch] for batch in results] == [list(range(100, 107))] * 3
    assert await shard_app.shard.fetchval("SELECT count(*) FROM noetl.outbox") == 60


async def test_rows_of_a_publisher_that_died_are_read_again_at_once(shard_app):
    await _enqueue(shard_app, [21])
    assert [m.id for m in await store.claim(shard_app.shard, limit=10)] == [21]  # then it dies
    assert [m.id for m in await store.claim(shard_app.shard, limit=10)] == [21]


async def test_mark_failed_backs_off_and_keeps_the_row(shard_app):
    await _enqueue(shard_app, [31])
    await store.claim(shard_app.shard, limit=1)
    r = await shard_app.client.post("/api/internal/outbox/mark-failed",
                                    json={"failures": [{"id": 31, "error": "nats down"}]}, headers=AUTH)
    assert (await r.json())["marked"] == 1
    row = await shard_app.shard.fetchrow(
        "SELECT status, attempts, last_error, available_at > now() AS later FROM noetl.outbox WHERE id = 31")
    assert (row["status"], row["attempts"], row["last_error"], row["later"]) == ("failed", 1, "nats down", True)
    assert await store.claim(shard_app.shard, limit=1) == []  # not yet due
    await shard_app.shard.execute("UPDATE noetl.outbox SET attempts = 2000 WHERE id = 31")  # 2^2000 overflows float8
    await store.mark_failed(shard_app.shard, [(31, "again")])
    delay = await shard_app.shard.fetchval(
        "SELECT extract(epoch FROM available_at - now()) FROM noetl.outbox WHERE id = 31")
    assert delay <= store.BACKOFF_CAP_SECONDS + 1  # capped, never dropped


async def test_long_poll_wakes_when_a_row_is_committed(shard_app):
    async def enqueue_later():
        await asyncio.sleep(0.3)
        await _enqueue(shard_app, [41])

    task = asyncio.create_task(enqueue_later())
    loop = asyncio.get_running_loop()
    started = loop.time()
    r = await shard_app.client.post("/api/internal/outbox/claim?wait_ms=10000", headers=AUTH)
    elapsed = loop.time() - started
    await task
    assert [m["id"] for m in (await r.json())["items"]] == [41]
    assert elapsed < 5  # woken by the commit, not by the 10 s deadline


async def test_a_commit_with_a_notification_wakes_claimers_at_once(shard_app):
    signal = shard_app.client.server.app[WAKEUPS].outbox
    ticket = signal.ticket()
    await _enqueue(shard_app, [61])
    assert ticket.is_set()  # set in the commit's aftermath, not by a timer


async def test_a_command_the_shard_announced_is_deleted_by_the_next_claim_not_relayed(database_factory, nats_url):
    """With NATS connected the shard publishes a command itself after commit; once JetStream has
    acknowledged it, the relay has nothing left to do but delete the row: the commit does not wake
    claimers at once, and the next claim deletes the row instead of returning it."""
    nc = await nats.connect(nats_url)
    harness = await start_harness(await database_factory(), nats_url=nats_url)
    try:
        await ensure_streams(nc.jetstream())
        app = harness.client.server.app
        for _ in range(100):
            if app[ANNOUNCER].state == "connected":
                break
            await asyncio.sleep(0.05)
        assert app[ANNOUNCER].state == "connected"
        execution_id = 777_000_123
        ticket = app[WAKEUPS].outbox.ticket()
        await _enqueue(harness, [71], subject=f"noetl.commands.shared.{execution_id}")
        assert not ticket.is_set()  # no urgent wake-up: the shard is announcing it
        for _ in range(100):
            info = await nc.jetstream().stream_info(COMMANDS_STREAM, subjects_filter=f"noetl.commands.*.{execution_id}")
            if info.state.subjects:
                break
            await asyncio.sleep(0.05)
        assert sum((info.state.subjects or {}).values()) == 1
        r = await harness.client.post("/api/internal/outbox/claim?limit=10", headers=AUTH)
        assert (await r.json())["items"] == []
        assert await harness.shard.fetchval("SELECT count(*) FROM noetl.outbox") == 0
    finally:
        await stop_harness(harness)
        await nc.close()


async def test_validation_and_auth(shard_app):
    c = shard_app.client
    assert (await c.post("/api/internal/outbox/claim")).status == 403
    assert (await c.get("/api/internal/outbox/pending-count", headers={"Authorization": "Bearer nope"})).status == 403
    r = await c.post("/api/internal/outbox/claim?limit=0", headers=AUTH)
    assert r.status == 400 and "limit" in (await r.json())["error"]
    r = await c.post("/api/internal/outbox/claim?wait_ms=abc", headers=AUTH)
    assert r.status == 400 and "wait_ms" in (await r.json())["error"]
    r = await c.post("/api/internal/outbox/mark-published", json={"ids": ["x"]}, headers=AUTH)
    assert r.status == 422 and "ids" in (await r.json())["error"]


async def test_a_claim_carries_the_payload_as_the_compact_json_that_was_written(shard_app):
    """The claim passes the stored JSON on without decoding it: the bytes are what decoding and
    re-encoding would give (compact, jsonb's key order), escapes and non-ASCII text included."""
    tricky = {"step": "é \" \\ \n \u0001 ✓", "nested": {"b": [1, 2.5, None, True]}, "event_id": 2**62}
    note = CommandNotification(execution_id=1, event_id=31, command_id="31", step="s", execution_pool="shared")
    async with shard_app.client.server.app[ORCHESTRATOR].transaction() as txn:
        txn.uow.notify(OutboxRow(id=31, execution_id=1, event_id=31, subject="noetl.commands.shared.1", payload=note))
        txn.uow.notify(OutboxRow(id=32, execution_id=1, event_id=32, subject="noetl.commands.shared.1",
                                 payload=tricky))
    first, second = await store.claim(shard_app.shard, limit=10)
    for message in (first, second):
        raw = bytes(message.payload)
        assert raw == msgspec.json.encode(msgspec.json.decode(raw))
    assert msgspec.json.decode(bytes(first.payload), type=CommandNotification) == note
    assert msgspec.json.decode(bytes(second.payload)) == tricky
