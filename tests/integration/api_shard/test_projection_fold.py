"""The set-based projection fold on a real Postgres.

- It equals the fold it replaced (one event at a time, in event id order, kept below as the
  reference) on random batches, nulls and redeliveries included, after every batch.
- Real executions' events, split into multi-event messages and delivered in shuffled orders with
  duplicates and late redeliveries, give the same read models as delivering them once, in order.
- A batch costs one statement, however many messages it holds.
- The project route's `{"messages": [...]}` body is validated field by field.
"""

from __future__ import annotations

import asyncio
import base64
import random
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from noetl_api_shard.store.projections import (STEP_STATUS, TERMINAL, Delivery, ProjectedEvent, fold_batch,
                                               purge_markers)
from noetl_common.db import apply_migrations

from .conftest import INTERNAL_TOKEN, start_harness, stop_harness

AUTH = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}
SUMMARY = ("SELECT execution_id, catalog_id, path, status, started_at, ended_at, duration_ms, event_count, "
           "step_count, failed_step_count, last_event_id, last_event_type, last_step, error "
           "FROM noetl.execution_summary ORDER BY execution_id")
TIMELINE = ("SELECT execution_id, entry_id, step, iteration, attempt, status, worker_id, issued_at, started_at, "
            "ended_at, duration_ms, error, last_event_id FROM noetl.step_timeline ORDER BY execution_id, entry_id")


async def read_models(conn) -> tuple[list[tuple], list[tuple]]:
    return [tuple(r) for r in await conn.fetch(SUMMARY)], [tuple(r) for r in await conn.fetch(TIMELINE)]


@pytest_asyncio.fixture
async def shard_db(database_factory) -> AsyncIterator:
    """`await shard_db()`: a connection to a fresh, migrated shard database."""
    conns: list[asyncpg.Connection] = []

    async def make() -> asyncpg.Connection:
        conn = await asyncpg.connect((await database_factory()).shard_dsn)
        conns.append(conn)
        await apply_migrations(conn, "shard")
        return conn

    yield make
    for conn in conns:
        await conn.close()


# --- the reference: the per-event fold this replaced, verbatim --------------------------------

REFERENCE_SUMMARY = """
    INSERT INTO noetl.execution_summary AS s (execution_id, catalog_id, path, status, started_at, ended_at,
           duration_ms, event_count, last_event_id, last_event_type, last_step, error, step_count,
           failed_step_count)
    VALUES ($1, $2, CASE WHEN $3 = 'playbook.initialized' THEN $4 END, coalesce($5, 'RUNNING'),
            coalesce($8, now()), CASE WHEN $5 IS NOT NULL THEN coalesce($8, now()) END,
            CASE WHEN $5 IS NOT NULL THEN 0 END, 1, $6, $3, $4, $7,
            CASE WHEN $3 = 'step.exit' THEN 1 ELSE 0 END,
            CASE WHEN $3 = 'step.failed' THEN 1 ELSE 0 END)
    ON CONFLICT (execution_id) DO UPDATE SET
        event_count = s.event_count + 1,
        path = coalesce(s.path, EXCLUDED.path),
        catalog_id = coalesce(s.catalog_id, EXCLUDED.catalog_id),
        status = CASE WHEN s.status IN ('COMPLETED', 'FAILED', 'CANCELLED') THEN s.status ELSE EXCLUDED.status END,
        started_at = least(s.started_at, EXCLUDED.started_at),
        ended_at = coalesce(s.ended_at, EXCLUDED.ended_at),
        duration_ms = extract(epoch FROM coalesce(s.ended_at, EXCLUDED.ended_at)
                                         - least(s.started_at, EXCLUDED.started_at)) * 1000,
        last_event_id = greatest(s.last_event_id, EXCLUDED.last_event_id),
        last_event_type = CASE WHEN EXCLUDED.last_event_id > coalesce(s.last_event_id, 0)
                               THEN EXCLUDED.last_event_type ELSE s.last_event_type END,
        last_step = CASE WHEN EXCLUDED.last_event_id > coalesce(s.last_event_id, 0)
                         THEN coalesce(EXCLUDED.last_step, s.last_step) ELSE coalesce(s.last_step, EXCLUDED.last_step) END,
        error = CASE WHEN EXCLUDED.last_event_id > coalesce(s.last_event_id, 0)
                     THEN coalesce(EXCLUDED.error, s.error) ELSE coalesce(s.error, EXCLUDED.error) END,
        step_count = s.step_count + EXCLUDED.step_count,
        failed_step_count = s.failed_step_count + EXCLUDED.failed_step_count, updated_at = now()
"""
REFERENCE_STEP = """
    INSERT INTO noetl.step_timeline AS t (execution_id, entry_id, step, iteration, attempt, status, worker_id,
           issued_at, started_at, ended_at, error, last_event_id)
    VALUES ($1, $2, coalesce($3, '?'), $4, coalesce($5, 1), $6, $7, coalesce($10, now()),
            CASE WHEN $6 = 'RUNNING' THEN coalesce($10, now()) END,
            CASE WHEN $6 IN ('COMPLETED', 'FAILED') THEN coalesce($10, now()) END, $8, $9)
    ON CONFLICT (execution_id, entry_id) DO UPDATE SET
        status = CASE WHEN t.status IN ('COMPLETED', 'FAILED') THEN t.status
                      WHEN EXCLUDED.status IN ('COMPLETED', 'FAILED') THEN EXCLUDED.status
                      WHEN array_position(ARRAY['ISSUED', 'CLAIMED', 'RUNNING'], EXCLUDED.status)
                         > array_position(ARRAY['ISSUED', 'CLAIMED', 'RUNNING'], t.status)
                      THEN EXCLUDED.status ELSE t.status END,
        worker_id = coalesce(EXCLUDED.worker_id, t.worker_id), attempt = greatest(t.attempt, EXCLUDED.attempt),
        issued_at = least(t.issued_at, EXCLUDED.issued_at),
        started_at = least(t.started_at, EXCLUDED.started_at),
        ended_at = coalesce(t.ended_at, EXCLUDED.ended_at),
        duration_ms = extract(epoch FROM coalesce(t.ended_at, EXCLUDED.ended_at)
                           - coalesce(least(t.started_at, EXCLUDED.started_at),
                                      least(t.issued_at, EXCLUDED.issued_at))) * 1000,
        error = coalesce(EXCLUDED.error, t.error),
        last_event_id = greatest(t.last_event_id, EXCLUDED.last_event_id), updated_at = now()
"""


async def reference_fold(conn, e: ProjectedEvent) -> None:
    await conn.execute(REFERENCE_SUMMARY, e.execution_id, e.catalog_id, e.event_type, e.node_name,
                       TERMINAL.get(e.event_type), e.event_id, e.error, e.at)
    step_status = STEP_STATUS.get(e.event_type)
    if step_status and e.command_id:
        await conn.execute(REFERENCE_STEP, e.execution_id, e.command_id, e.node_name, e.iteration, e.attempt,
                           step_status, e.worker_id, e.error, e.event_id, e.at)


# --- random batches against the reference -----------------------------------------------------

EVENT_TYPES = [*TERMINAL, *STEP_STATUS, "playbook.initialized", "step.enter", "step.exit", "step.failed",
               "batch.accepted", ""]
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def random_events(rng: random.Random, count: int) -> list[ProjectedEvent]:
    """Events over three executions and a few step runs, every optional field sometimes null."""
    ids = sorted(rng.sample(range(1_000, 1_000 + 10 * count), count))
    return [ProjectedEvent(
        event_id=event_id, execution_id=rng.choice([501, 502, 503]), event_type=rng.choice(EVENT_TYPES),
        node_name=rng.choice([None, "a", "b", "c"]), command_id=rng.choice([None, 7, 8, 9]),
        worker_id=rng.choice([None, "w1", "w2"]), attempt=rng.choice([None, 1, 2, 3]),
        iteration=rng.choice([None, 0, 1]), error=rng.choice([None, None, "x", "y"]),
        catalog_id=rng.choice([None, 5, 6]), at=T0 + timedelta(milliseconds=rng.randrange(100_000)))
        for event_id in ids]


def random_messages(rng: random.Random, events: list[ProjectedEvent]) -> list[Delivery]:
    """Any events may share a message (one transaction can touch a child and its parent)."""
    shuffled = rng.sample(events, len(events))
    messages, i = [], 0
    while i < len(shuffled):
        size = rng.randint(1, 4)
        messages.append(Delivery(900_000 + len(messages), shuffled[i:i + size]))
        i += size
    return messages


def random_batches(rng: random.Random, messages: list[Delivery]) -> list[list[Delivery]]:
    """Batches with repeats inside and across them; the last one holds every message, so all arrive."""
    batches = [rng.choices(messages, k=rng.randint(1, 5)) for _ in range(rng.randint(2, 8))]
    return [*batches, rng.sample(messages, len(messages))]


def fresh_events(batch: list[Delivery], seen: set[int]) -> list[ProjectedEvent]:
    """What the reference folds: the events of deliveries not seen before, once each, by event id."""
    new = {d.delivery_id: d for d in batch if d.delivery_id not in seen}
    seen.update(new)
    return sorted({e.event_id: e for d in new.values() for e in d.events}.values(), key=lambda e: e.event_id)


async def test_a_batch_folds_like_its_fresh_events_one_by_one_in_id_order(shard_db):
    reference, batched = await shard_db(), await shard_db()
    for seed in range(40):
        rng = random.Random(seed)
        for conn in (reference, batched):
            await conn.execute("TRUNCATE noetl.execution_summary, noetl.step_timeline, noetl.projected_delivery")
        messages = random_messages(rng, random_events(rng, rng.randint(5, 40)))
        seen: set[int] = set()
        for n, batch in enumerate(random_batches(rng, messages)):
            fresh = fresh_events(batch, seen)
            async with reference.transaction():
                for event in fresh:
                    await reference_fold(reference, event)
            assert await fold_batch(batched, batch) == len(fresh)
            assert await read_models(batched) == await read_models(reference), f"seed {seed}, batch {n}"


# --- real executions, any delivery order ------------------------------------------------------

PLAYBOOK = b"""
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: two_steps, path: tests/two_steps}
workflow:
  - step: start
    tool: {kind: python, code: "result = {'a': 1}"}
    next: [{step: end}]
  - step: end
    tool: {kind: python, code: "result = {'b': 2}"}
"""


@pytest_asyncio.fixture
async def shard(database_factory) -> AsyncIterator:
    harness = await start_harness(await database_factory())
    r = await harness.client.post("/api/catalog/register", json={"content": base64.b64encode(PLAYBOOK).decode()})
    assert r.status == 200, await r.text()
    try:
        yield harness
    finally:
        await stop_harness(harness)


async def run_step(c, execution_id: str, worker: str, outcome: str) -> None:
    """Act as a worker on the execution's newest command: claim it, report its end as `outcome`."""
    events = (await (await c.get(f"/api/executions/{execution_id}/events")).json())["events"]
    issued = [e for e in events if e["event_type"] == "command.issued"][0]  # newest first
    r = await c.post(f"/api/commands/{issued['event_id']}/claim", json={"worker_id": worker})
    assert r.status == 200, await r.text()
    payload: dict[str, Any] = {"command_id": issued["event_id"]}
    payload.update({"result": {"ok": 1}} if outcome == "call.done" else {"error": f"{worker} broke"})
    r = await c.post("/api/events", json={"execution_id": execution_id, "name": outcome,
                                          "node_name": issued["node_name"], "worker_id": worker, "payload": payload})
    assert r.status == 200, await r.text()


async def published_events(c) -> list[dict]:
    """Every event envelope the shard published so far, by event id (either message format)."""
    claimed = await (await c.post("/api/internal/outbox/claim?limit=1000", headers=AUTH)).json()
    payloads = [m["payload"] for m in claimed["items"] if m["subject"].startswith("noetl.events.")]
    events = [e for p in payloads for e in (p["events"] if "events" in p else [p])]
    return sorted(events, key=lambda e: int(e["event_id"]))


def as_messages(rng: random.Random, events: list[dict]) -> list[dict]:
    """Consecutive events grouped as transactions would group them; executions interleave."""
    messages, i = [], 0
    while i < len(events):
        size = rng.randint(1, 4)
        messages.append({"id": str(10**15 + len(messages)), "events": events[i:i + size]})
        i += size
    return messages


async def deliver(c, sequence: list[dict], rng: random.Random) -> tuple[int, int]:
    """POST the messages in request-sized slices; returns (projected, duplicates) summed."""
    projected = duplicates = i = 0
    while i < len(sequence):
        size = rng.randint(1, 5)
        r = await c.post("/api/internal/events/project", json={"messages": sequence[i:i + size]}, headers=AUTH)
        body = await r.json()
        assert r.status == 200, body
        projected, duplicates, i = projected + body["projected"], duplicates + body["duplicates"], i + size
    return projected, duplicates


async def test_any_delivery_order_with_redeliveries_gives_the_same_read_models(shard):
    c = shard.client
    ok = (await (await c.post("/api/execute", json={"path": "tests/two_steps"})).json())["execution_id"]
    bad = (await (await c.post("/api/execute", json={"path": "tests/two_steps"})).json())["execution_id"]
    await run_step(c, ok, "w1", "call.done")
    await run_step(c, bad, "w2", "call.error")
    await run_step(c, ok, "w2", "call.done")
    events = await published_events(c)
    messages = as_messages(random.Random(0), events)

    async def fold(sequence: list[dict], rng: random.Random) -> tuple[tuple[int, int], tuple]:
        await shard.shard.execute("TRUNCATE noetl.execution_summary, noetl.step_timeline, noetl.projected_delivery")
        counts = await deliver(c, sequence, rng)
        return counts, await read_models(shard.shard)

    counts, in_order = await fold(messages, random.Random(1))
    assert counts == (len(events), 0)
    summaries, steps = in_order
    assert {(s[0], s[3]) for s in summaries} == {(int(ok), "COMPLETED"), (int(bad), "FAILED")}
    assert sum(s[7] for s in summaries) == len(events) and len(steps) == 3
    for seed in range(10):
        rng = random.Random(seed)
        shuffled = rng.sample(messages, len(messages))
        # Duplicates anywhere, and the first messages again after all the newer ones.
        sequence = [*shuffled, *rng.choices(messages, k=len(messages) // 2), *messages[:3]]
        counts, rows = await fold(sequence, rng)
        assert counts == (len(events), sum(len(m["events"]) for m in sequence) - len(events)), seed
        assert rows == in_order, seed


# --- cost ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("messages", [1, 25, 400])
async def test_a_batch_is_one_statement_whatever_its_size(shard_db, messages):
    conn = await shard_db()
    rng = random.Random(messages)
    batch = random_messages(rng, random_events(rng, messages * 3))[:messages]
    # A connection's first fold also has asyncpg look up the array types, once; not counted.
    await fold_batch(conn, [Delivery(1, [ProjectedEvent(event_id=1, execution_id=1, event_type="")])])
    statements: list[str] = []
    conn.add_query_logger(lambda record: statements.append(record.query))
    assert await fold_batch(conn, batch) == len({e.event_id for d in batch for e in d.events})
    assert await fold_batch(conn, batch) == 0  # redelivered: skipped whole, still one statement
    await asyncio.sleep(0)  # asyncpg hands each query to the logger with call_soon
    assert len(statements) == 2


async def test_purge_forgets_old_delivery_markers_only(shard_db):
    conn = await shard_db()
    event = ProjectedEvent(event_id=11, execution_id=501, event_type="step.enter", at=T0)
    await fold_batch(conn, [Delivery(1, [event]), Delivery(2, [event])])
    await conn.execute("UPDATE noetl.projected_delivery SET projected_at = now() - interval '2 days' "
                       "WHERE delivery_id = 1")
    assert await purge_markers(conn, 100) == 1
    assert await conn.fetchval("SELECT array_agg(delivery_id) FROM noetl.projected_delivery") == [2]


# --- the route's body ---------------------------------------------------------------------------

def envelope(event_id: int, execution_id: int, event_type: str = "step.enter", **extra) -> dict:
    return {"event_id": str(event_id), "execution_id": str(execution_id), "event_type": event_type,
            "node_name": "start", "event_time_ms": 1_790_000_000_000, **extra}


@pytest.mark.parametrize(("body", "field"), [
    ({"messages": []}, "non-empty"),
    ({"messages": [{"id": "1", "events": [envelope(11, 21)]}], "events": [envelope(12, 21)]}, "not both"),
    ({"messages": [{"id": "1", "events": [envelope(11, 21)]}, {"id": "x", "events": [envelope(12, 21)]}]},
     "messages[1].id must be an integer id"),
    ({"messages": [{"id": "1", "events": []}]}, "messages[0].events must be a non-empty list"),
    ({"messages": [{"id": "1"}]}, "messages[0].events must be a non-empty list"),
    ({"messages": [{"id": "1", "events": [envelope(11, 21)]}, {"id": "2", "events": [envelope(12, 21)]},
                   {"id": "3", "events": [envelope(13, 21), {"execution_id": "21"}]}]},
     "messages[2].events[1].event_id must be an integer id"),
    ({"messages": [{"id": "1", "events": [envelope(11, "nope")]}]}, "messages[0].events[0].execution_id"),
    ({"messages": [{"id": "1", "events": [envelope(11, 21, command_id="c-1")]}]},
     "messages[0].events[0].command_id must be an integer id"),
    ({"messages": [{"id": "1", "events": [envelope(11, 21, attempt="2")]}]}, "messages[0].events[0].attempt"),
    ({"messages": [{"id": "1", "events": [envelope(11, 21, attempt=2**40)]}]}, "messages[0].events[0].attempt"),
    ({"messages": [{"id": str(2**63), "events": [envelope(11, 21)]}]}, "messages[0].id must be an integer id"),
    ({"messages": [{"id": "1", "events": "all"}]}, "messages[0].events"),
    ({"messages": [{"id": "1", "events": [envelope(11, 21, event_time_ms=10**20)]}]},
     "messages[0].events[0].event_time_ms"),
    ({"messages": [{"id": "1", "events": [{"event_id": str(i), "execution_id": "21"} for i in range(1, 3000)]},
                   {"id": "2", "events": [{"event_id": str(i), "execution_id": "21"} for i in range(3000, 5002)]}]},
     "carry 5001 events; at most 5000 per request"),
    ({"messages": [{"id": str(i), "events": [{"event_id": str(i), "execution_id": "21"}]} for i in range(1, 1002)]},
     "messages has 1001 items; at most 1000 per request"),
])
async def test_a_bad_messages_body_is_a_400_naming_the_field(shard, body, field):
    r = await shard.client.post("/api/internal/events/project", json=body, headers=AUTH)
    answer = await r.json()
    assert r.status == 400 and field in answer["error"], answer
    assert await shard.count("projected_delivery", db="shard") == 0


async def test_messages_are_folded_once_each_across_executions(shard):
    c = shard.client
    first = {"id": "101", "events": [envelope(11, 21, "playbook.initialized", node_name="tests/p"),
                                     envelope(12, 22, "playbook.initialized", node_name="tests/child")]}
    second = {"id": "102", "events": [envelope(13, 22, "playbook.completed", node_name="tests/child"),
                                      envelope(14, 21, "playbook.completed", node_name="tests/p")]}
    for body, expected in [({"messages": [second]}, {"projected": 2, "duplicates": 0}),
                           ({"messages": [first, second, first]}, {"projected": 2, "duplicates": 4}),
                           ({"messages": [first]}, {"projected": 0, "duplicates": 2})]:
        r = await c.post("/api/internal/events/project", json=body, headers=AUTH)
        assert (r.status, await r.json()) == (200, expected)
    rows = await shard.shard.fetch("SELECT execution_id, path, status, event_count FROM noetl.execution_summary "
                                   "ORDER BY execution_id")
    assert [tuple(r) for r in rows] == [(21, "tests/p", "COMPLETED", 2), (22, "tests/child", "COMPLETED", 2)]
    assert (await c.post("/api/internal/events/project", json={"messages": [first]})).status == 403
