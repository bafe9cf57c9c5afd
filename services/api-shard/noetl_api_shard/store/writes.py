"""One transaction's writes in one statement.

Round trips are what a step costs, so everything a transaction changes — new executions, state,
events, commands, outbox messages, results and loop data — goes to Postgres as a single prepared
statement of data-modifying CTEs, whatever its size. Row sets travel as JSON arrays
(`json_to_recordset`), executions as typed arrays (their state is bytes).

Postgres forbids touching one row twice in a statement, so the caller merges: a command created
and claimed in the same transaction is one `CommandRow`, a new execution carries its final state.
"""

from __future__ import annotations

import functools
from typing import Any

import asyncpg
import msgspec

from .events import NewEvent
from .outbox import OutboxRow
from noetl_common.vocabulary import TERMINAL_STATUSES
from noetl_common.wire.execution import MAX_BATCH_EVENTS
from noetl_common.wire.internal import EventsMessage


class CommandRow(msgspec.Struct, kw_only=True):
    """A new command, in the state this transaction leaves it."""

    command_id: int
    execution_id: int
    catalog_id: int | None
    step: str
    tool_kind: str
    pool: str | None
    iteration: int | None
    context: dict[str, Any]
    status: str = "ISSUED"
    attempt: int = 1
    max_attempts: int = 1
    worker_id: str | None = None
    lease_seconds: float | None = None      # set: claimed with a lease from now
    started: bool = False
    completed: bool = False
    result: Any = None
    error: str | None = None


class CommandChange(msgspec.Struct, kw_only=True):
    """Changes to an existing command; None/False leaves a column as it is."""

    command_id: int
    status: str | None = None
    worker_id: str | None = None
    attempt: int | None = None
    lease_seconds: float | None = None      # extend (or take) the lease: now() + seconds
    claimed: bool = False
    started: bool = False
    completed: bool = False                 # terminal: completed_at now, lease cleared, result/error set
    result: Any = None
    error: str | None = None
    if_issued: bool = False                 # an optimistic claim: only of a command still ISSUED (see Expect)


class ExecutionWrite(msgspec.Struct, kw_only=True):
    """A new execution (catalog_id set) or changes to one; None leaves a column as it is."""

    execution_id: int
    state: bytes | None = None
    state_version: int | None = None
    status: str | None = None               # a terminal status also sets ended_at
    result: Any = None
    error: str | None = None
    last_event_id: int | None = None
    last_event_type: str | None = None
    last_step: str | None = None
    # new executions only
    catalog_id: int | None = None
    path: str | None = None
    version: int | None = None
    workload: dict[str, Any] | None = None
    parent_execution_id: int | None = None
    parent_command_id: int | None = None
    requested_by: str | None = None
    execution_pool: str | None = None


class StepResultRow(msgspec.Struct):
    execution_id: int
    step: str
    result: Any


class LoopItemsRow(msgspec.Struct):
    execution_id: int
    step: str
    run: int
    item_offset: int
    items: list[Any]


class LoopResultRow(msgspec.Struct):
    execution_id: int
    step: str
    run: int
    idx: int
    result: Any


class StageRow(msgspec.Struct, kw_only=True):
    """A stage the engine opened (NoETL's frames runtime: one per run of a `process: frame` loop)."""

    stage_id: int
    execution_id: int
    step_name: str
    loop_event_id: str            # the loop run (NoETL: the loop's epoch)
    frame_policy: dict[str, Any]
    opened_event_id: int
    parent_event_id: int | None


class StageClose(msgspec.Struct, kw_only=True):
    execution_id: int
    stage_id: int
    status: str
    closed_event_id: int


class WriteSet(msgspec.Struct, kw_only=True):
    new_executions: list[ExecutionWrite] = []
    executions: list[ExecutionWrite] = []
    events: list[NewEvent] = []
    new_commands: list[CommandRow] = []
    commands: list[CommandChange] = []
    cancel_open_of: list[int] = []          # executions whose other open commands are cancelled
    outbox: list[OutboxRow] = []
    step_results: list[StepResultRow] = []
    loop_items: list[LoopItemsRow] = []
    loop_results: list[LoopResultRow] = []
    stages: list[StageRow] = []
    stage_closes: list[StageClose] = []


# Events per merged projector message: what one event batch (MAX_BATCH_EVENTS) may log on its own.
MAX_MIRROR_EVENTS = MAX_BATCH_EVENTS

_TERMINAL = "(" + ", ".join(f"'{s}'" for s in TERMINAL_STATUSES) + ")"
_LATE = f"e.status IN {_TERMINAL} AND x.status IS NULL"
# Executions travel as typed arrays (their state is bytes), parameters {0}..{8}.
_EXEC_ROWS = ("unnest({0}::bigint[], {1}::bytea[], {2}::bigint[], {3}::text[], {4}::jsonb[], {5}::text[], "
              "{6}::bigint[], {7}::text[], {8}::text[])\n"
              "         AS x(id, state, state_version, status, result, error, last_event_id, last_event_type, last_step)")

_CTES: dict[str, str] = {
    "new_exec": f"""
new_exec AS (
    INSERT INTO noetl.execution (execution_id, catalog_id, path, version, status, parent_execution_id,
        parent_command_id, workload, requested_by, execution_pool, state, state_version, state_event_id, result,
        error, last_event_id, last_event_type, last_step, started_at, ended_at)
    SELECT x.id, n.catalog_id, n.path, n.version, coalesce(x.status, 'RUNNING'), n.parent_execution_id,
           n.parent_command_id, coalesce(n.workload, '{{{{}}}}'::jsonb), n.requested_by, n.execution_pool, x.state,
           coalesce(x.state_version, 0), x.last_event_id, x.result, x.error, x.last_event_id,
           x.last_event_type, x.last_step, now(), CASE WHEN x.status IN {_TERMINAL} THEN now() END
    FROM {_EXEC_ROWS}
    JOIN json_to_recordset({{9}}::json) AS n(execution_id bigint, catalog_id bigint, path text, version int,
        parent_execution_id bigint, parent_command_id bigint, workload jsonb, requested_by text,
        execution_pool text)
      ON n.execution_id = x.id
)""",
    "upd_exec": f"""
upd_exec AS (
    UPDATE noetl.execution e SET
        state = coalesce(x.state, e.state),
        state_version = coalesce(x.state_version, e.state_version),
        state_event_id = CASE WHEN x.state IS NOT NULL THEN coalesce(x.last_event_id, e.state_event_id)
                              ELSE e.state_event_id END,
        status = coalesce(x.status, e.status),
        result = CASE WHEN x.status IS NOT NULL THEN x.result ELSE e.result END,
        error = CASE WHEN x.status IS NOT NULL THEN x.error ELSE e.error END,
        ended_at = CASE WHEN x.status IN {_TERMINAL} THEN now() ELSE e.ended_at END,
        -- Late events (a heartbeat after the end) do not move a finished execution's last event.
        last_event_id = CASE WHEN {_LATE} THEN e.last_event_id ELSE coalesce(x.last_event_id, e.last_event_id) END,
        last_event_type = CASE WHEN {_LATE} THEN e.last_event_type
                               ELSE coalesce(x.last_event_type, e.last_event_type) END,
        last_step = CASE WHEN {_LATE} THEN e.last_step ELSE coalesce(x.last_step, e.last_step) END,
        updated_at = now()
    FROM {_EXEC_ROWS}
    -- A state write applies only to the version it was computed from (always true under the row
    -- lock; an optimistic writer checks the count, see Expect). "= ANY" too: the scan of the
    -- table goes by primary key whatever plan is cached.
    WHERE e.execution_id = x.id AND e.execution_id = ANY({{0}}::bigint[])
      AND (x.state_version IS NULL OR e.state_version = x.state_version - 1)
    RETURNING e.execution_id
)""",
    "ins_event": """
ins_event AS (
    INSERT INTO noetl.event (event_id, execution_id, event_type, node_name, node_type, status, catalog_id,
        parent_event_id, parent_execution_id, command_id, worker_id, attempt, iteration, duration_ms, payload,
        error, meta)
    SELECT x.event_id, x.execution_id, x.event_type, coalesce(x.node_name, c.step), coalesce(x.node_type, c.tool_kind),
           x.status, x.catalog_id, x.parent_event_id, x.parent_execution_id, x.command_id, x.worker_id,
           coalesce(x.attempt, c.attempt), coalesce(x.iteration, c.iteration),
           x.duration_ms, coalesce(x.payload, '{{}}'::jsonb), x.error, x.meta
    FROM json_to_recordset({0}::json) AS x(event_id bigint, execution_id bigint, event_type text, node_name text,
        node_type text, status text, catalog_id bigint, parent_event_id bigint, parent_execution_id bigint,
        command_id bigint, worker_id text, attempt int, iteration int, duration_ms float8, payload jsonb,
        error text, meta jsonb)
    -- A worker's event names its command; the command's row supplies what the writer left out
    -- (an optimistic writer has no command row in hand). By the execution too: that prunes the
    -- partitions to one at run time, even in a generic plan. LIMIT 1 keeps the subquery a probe
    -- per event: flattened into a join, the planner (json_to_recordset guesses 100 rows) hashed
    -- the whole command partition for every write, a cost that grew with the shard's history.
    LEFT JOIN LATERAL (SELECT step, tool_kind, attempt, iteration FROM noetl.command
                       WHERE command_id = x.command_id AND execution_id = x.execution_id
                         AND x.node_type IS NULL LIMIT 1) c ON true
    ON CONFLICT DO NOTHING
)""",
    "new_cmd": """
new_cmd AS (
    INSERT INTO noetl.command (command_id, execution_id, catalog_id, step, tool_kind, pool, iteration, context,
        status, attempt, max_attempts, worker_id, lease_expires_at, heartbeat_at, claimed_at, started_at,
        completed_at, result, error)
    SELECT x.command_id, x.execution_id, x.catalog_id, x.step, x.tool_kind, x.pool, x.iteration,
           coalesce(x.context, '{{}}'::jsonb), x.status, x.attempt, x.max_attempts, x.worker_id,
           CASE WHEN x.lease_seconds IS NOT NULL AND NOT x.completed
                THEN now() + make_interval(secs => x.lease_seconds) END,
           CASE WHEN x.lease_seconds IS NOT NULL THEN now() END,
           CASE WHEN x.worker_id IS NOT NULL THEN now() END,
           CASE WHEN x.started THEN now() END,
           CASE WHEN x.completed THEN now() END, x.result, x.error
    FROM json_to_recordset({0}::json) AS x(command_id bigint, execution_id bigint, catalog_id bigint, step text,
        tool_kind text, pool text, iteration int, context jsonb, status text, attempt int, max_attempts int,
        worker_id text, lease_seconds float8, started boolean, completed boolean, result jsonb, error text)
    ON CONFLICT DO NOTHING
)""",
    "upd_cmd": """
upd_cmd AS (
    -- Typed arrays, not a JSON recordset: unnest's row estimate comes from the arrays, so the
    -- planner updates by primary key instead of hashing the whole command table.
    UPDATE noetl.command c SET
        status = coalesce(x.status, c.status),
        worker_id = coalesce(x.worker_id, c.worker_id),
        attempt = coalesce(x.attempt, c.attempt),
        lease_expires_at = CASE WHEN x.completed THEN NULL
                                WHEN x.lease_seconds IS NOT NULL THEN now() + make_interval(secs => x.lease_seconds)
                                ELSE c.lease_expires_at END,
        heartbeat_at = CASE WHEN x.lease_seconds IS NOT NULL THEN now() ELSE c.heartbeat_at END,
        claimed_at = CASE WHEN x.claimed THEN now() ELSE c.claimed_at END,
        started_at = CASE WHEN x.claimed THEN (CASE WHEN x.started THEN now() END)
                          WHEN x.started THEN coalesce(c.started_at, now()) ELSE c.started_at END,
        completed_at = CASE WHEN x.completed THEN now() ELSE c.completed_at END,
        result = CASE WHEN x.completed THEN x.result ELSE c.result END,
        error = CASE WHEN x.completed THEN x.error ELSE c.error END,
        updated_at = now()
    FROM unnest({0}::bigint[], {1}::text[], {2}::text[], {3}::int[], {4}::float8[], {5}::bool[], {6}::bool[],
                {7}::bool[], {8}::jsonb[], {9}::text[], {10}::bool[])
         AS x(command_id, status, worker_id, attempt, lease_seconds, claimed, started, completed, result, error,
              if_issued)
    WHERE c.command_id = x.command_id AND c.command_id = ANY({0}::bigint[])
      AND (x.status IS NULL OR c.status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED'))
      AND (NOT x.if_issued OR c.status = 'ISSUED')
    RETURNING x.if_issued
)""",
    "cancel_cmd": """
cancel_cmd AS (
    UPDATE noetl.command c SET status = 'CANCELLED', completed_at = now(), lease_expires_at = NULL,
        updated_at = now()
    WHERE c.execution_id = ANY({0}::bigint[]) AND c.status IN ('ISSUED', 'CLAIMED', 'RUNNING')
      AND c.command_id <> ALL({1}::bigint[])
)""",
    "ins_outbox": """
ins_outbox AS (
    INSERT INTO noetl.outbox (id, execution_id, event_id, subject, payload, headers)
    SELECT x.id, x.execution_id, x.event_id, x.subject, x.payload, x.headers
    FROM json_to_recordset({0}::json) AS x(id bigint, execution_id bigint, event_id bigint, subject text,
        payload jsonb, headers jsonb)
)""",
    "ins_result": """
ins_result AS (
    INSERT INTO noetl.step_result (execution_id, step, result)
    SELECT x.execution_id, x.step, x.result
    FROM json_to_recordset({0}::json) AS x(execution_id bigint, step text, result jsonb)
    ON CONFLICT (execution_id, step) DO UPDATE SET result = EXCLUDED.result, updated_at = now()
)""",
    "ins_items": """
ins_items AS (
    INSERT INTO noetl.loop_items (execution_id, step, run, item_offset, items)
    SELECT x.execution_id, x.step, x.run, x.item_offset, x.items
    FROM json_to_recordset({0}::json) AS x(execution_id bigint, step text, run int, item_offset int, items jsonb)
    ON CONFLICT DO NOTHING
)""",
    "ins_loop_result": """
ins_loop_result AS (
    INSERT INTO noetl.loop_result (execution_id, step, run, idx, result)
    SELECT x.execution_id, x.step, x.run, x.idx, x.result
    FROM json_to_recordset({0}::json) AS x(execution_id bigint, step text, run int, idx int, result jsonb)
    ON CONFLICT (execution_id, step, run, idx) DO UPDATE SET result = EXCLUDED.result
)""",
    # Only a transaction that opens or closes a frames-runtime stage has these parts.
    "ins_stage": """
ins_stage AS (
    INSERT INTO noetl.stage (stage_id, execution_id, parent_event_id, loop_event_id, opened_event_id, kind,
        step_name, dsl_ref, status, frame_policy)
    SELECT x.stage_id, x.execution_id, x.parent_event_id, x.loop_event_id, x.opened_event_id, 'loop', x.step_name,
           'workflow.' || x.step_name, 'OPEN', coalesce(x.frame_policy, '{{}}'::jsonb)
    FROM json_to_recordset({0}::json) AS x(stage_id bigint, execution_id bigint, step_name text, loop_event_id text,
        frame_policy jsonb, opened_event_id bigint, parent_event_id bigint)
    ON CONFLICT DO NOTHING
)""",
    "upd_stage": """
upd_stage AS (
    UPDATE noetl.stage s SET status = x.status, closed_event_id = x.closed_event_id,
        ended_at = coalesce(s.ended_at, now()), updated_at = now()
    FROM json_to_recordset({0}::json) AS x(execution_id bigint, stage_id bigint, status text, closed_event_id bigint)
    WHERE s.execution_id = x.execution_id AND s.stage_id = x.stage_id AND s.status IN ('OPEN', 'RUNNING')
)""",
}

_EXEC_COLUMNS = ("execution_id", "state", "state_version", "status", "result", "error", "last_event_id",
                 "last_event_type", "last_step")


_CHANGE_COLUMNS = ("command_id", "status", "worker_id", "attempt", "lease_seconds", "claimed", "started",
                   "completed", "result", "error", "if_issued")


def _columns(rows: list[Any], columns: tuple[str, ...]) -> list[list[Any]]:
    return [[getattr(r, c) for r in rows] for c in columns]


def _exec_arrays(rows: list[ExecutionWrite]) -> list[list[Any]]:
    return _columns(rows, _EXEC_COLUMNS)


class _NewExecution(msgspec.Struct):
    execution_id: int
    catalog_id: int | None
    path: str | None
    version: int | None
    parent_execution_id: int | None
    parent_command_id: int | None
    workload: dict[str, Any] | None
    requested_by: str | None
    execution_pool: str | None


def _new_execution_facts(rows: list[ExecutionWrite]) -> list[_NewExecution]:
    return [_NewExecution(r.execution_id, r.catalog_id, r.path, r.version, r.parent_execution_id,
                          r.parent_command_id, r.workload, r.requested_by, r.execution_pool) for r in rows]


def _touched_commands(ws: WriteSet) -> list[int]:
    return [c.command_id for c in ws.new_commands] + [c.command_id for c in ws.commands]


def _parts(ws: WriteSet) -> list[tuple[str, list[Any]]]:
    """The CTEs this write set needs, with their parameters (an empty part costs planning and
    executor start-up for nothing, so it is left out)."""
    candidates = [
        ("new_exec", ws.new_executions, lambda: [*_exec_arrays(ws.new_executions),
                                                 _new_execution_facts(ws.new_executions)]),
        ("upd_exec", ws.executions, lambda: _exec_arrays(ws.executions)),
        ("ins_event", ws.events, lambda: [ws.events]),
        ("new_cmd", ws.new_commands, lambda: [ws.new_commands]),
        ("upd_cmd", ws.commands, lambda: _columns(ws.commands, _CHANGE_COLUMNS)),
        ("cancel_cmd", ws.cancel_open_of, lambda: [ws.cancel_open_of, _touched_commands(ws)]),
        ("ins_outbox", ws.outbox, lambda: [ws.outbox]),
        ("ins_result", ws.step_results, lambda: [ws.step_results]),
        ("ins_items", ws.loop_items, lambda: [ws.loop_items]),
        ("ins_loop_result", ws.loop_results, lambda: [ws.loop_results]),
        ("ins_stage", ws.stages, lambda: [ws.stages]),
        ("upd_stage", ws.stage_closes, lambda: [ws.stage_closes]),
    ]
    return [(name, params()) for name, rows, params in candidates if rows]


class Expect(msgspec.Struct, frozen=True):
    """What an optimistic write (no transaction, no row lock) requires: every execution row it
    changes still at the version its state was computed from, every command it claims (`claims`:
    changes with `if_issued`) still ISSUED, and no earlier batch answered under any of its
    Idempotency-Keys (execution id, key). Checked inside the statement, which otherwise writes
    nothing (noetl.expect_written raises)."""

    executions: int
    claims: int = 0
    batch_keys: list[tuple[int, str]] = []


class Conflict(Exception):
    """Another writer changed the execution since it was read: recompute under the row lock."""


class KnownBatch(Exception):
    """The Idempotency-Key was answered before: the earlier answer stands."""


_PRIOR = """
prior AS (
    -- One index probe per key (LATERAL): a join would let a generic plan scan every batch logged.
    SELECT 1 FROM unnest({0}::bigint[], {1}::text[]) AS k(execution_id, key),
    LATERAL (SELECT 1 FROM noetl.event e WHERE e.execution_id = k.execution_id
             AND e.meta->>'idempotency_key' = k.key AND e.event_type = 'batch.accepted' LIMIT 1) AS hit
)"""


@functools.lru_cache(maxsize=None)
def statement(names: tuple[str, ...], arities: tuple[int, ...], expect: bool = False) -> str:
    """The statement for a combination of parts, numbered in order (a few dozen combinations
    occur; each is prepared once per connection); with `expect`, the last parameters are the
    expected count of execution rows and the batch keys (execution ids, keys)."""
    ctes, n = [], 1
    for name, arity in zip(names, arities):
        ctes.append(_CTES[name].format(*(f"${n + i}" for i in range(arity))))
        n += arity
    if not expect:
        return "WITH\n" + ",\n".join(ctes) + "\nSELECT 1"
    ctes.append(_PRIOR.format(f"${n + 1}", f"${n + 2}"))
    written = " + ".join(["0"] + (["(SELECT count(*) FROM upd_exec)"] if "upd_exec" in names else [])
                         + (["(SELECT count(*) FROM upd_cmd WHERE if_issued)"] if "upd_cmd" in names else []))
    return ("WITH\n" + ",\n".join(ctes) +
            f"\nSELECT noetl.expect_written({written}, ${n}::bigint, (SELECT count(*) FROM prior))")


async def flush(conn: asyncpg.Connection, ws: WriteSet, expect: Expect | None = None) -> None:
    """Send a transaction's writes as one statement. Under a transaction (the caller's) as is;
    alone, with `expect`, as an optimistic write that raises Conflict or KnownBatch, writing
    nothing, when its expectations fail."""
    parts = _parts(ws)
    if not parts and expect is None:
        return
    names = tuple(name for name, _ in parts)
    args = [v for _, p in parts for v in p]
    if expect is None:
        await conn.execute(statement(names, tuple(len(p) for _, p in parts)), *args)
        return
    try:
        await conn.execute(statement(names, tuple(len(p) for _, p in parts), True), *args,
                           expect.executions + expect.claims, [k[0] for k in expect.batch_keys],
                           [k[1] for k in expect.batch_keys])
    except asyncpg.PostgresError as exc:
        if exc.sqlstate == "NTL01":
            raise Conflict(str(exc)) from None
        if exc.sqlstate == "NTL02":
            raise KnownBatch(str(exc)) from None
        raise


def merge(sets: list[tuple[WriteSet, Expect]]) -> tuple[WriteSet, Expect]:
    """Write sets of different executions as one (a group commit): rows concatenated,
    expectations summed, and the projector's messages merged (see `one_mirror_row`)."""
    merged = WriteSet(**{f: [row for ws, _ in sets for row in getattr(ws, f)] for f in WriteSet.__struct_fields__})
    merged.outbox = one_mirror_row(merged.outbox)
    expect = Expect(executions=sum(e.executions for _, e in sets), claims=sum(e.claims for _, e in sets),
                    batch_keys=[k for _, e in sets for k in e.batch_keys])
    return merged, expect


def one_mirror_row(rows: list[OutboxRow]) -> list[OutboxRow]:
    """The events messages of a group's writes as few outbox rows: one row inserted and deleted,
    one delivery for the projector to fold and record, per MAX_MIRROR_EVENTS events instead of one
    per write (a merged message is never larger than one event batch's could be on its own, so it
    stays within the projector's and JetStream's limits). Each execution's events come from one
    write of the group, so they stay in order; a merged row takes the newest id of its writes:
    every earlier row of those executions has a smaller one (minted before their write), so the
    publisher, which goes by id, still relays an execution's messages in order. Command
    notifications stay rows of their own (each is a worker's subject)."""
    mirror = [r for r in rows if isinstance(r.payload, EventsMessage)]
    if len(mirror) < 2:
        return rows
    chunks: list[list[OutboxRow]] = [[]]
    size = 0
    for row in mirror:
        count = len(row.payload.events or ())
        if chunks[-1] and size + count > MAX_MIRROR_EVENTS:
            chunks.append([])
            size = 0
        chunks[-1].append(row)
        size += count
    merged = [msgspec.structs.replace(max(chunk, key=lambda r: r.id), payload=EventsMessage(
        events=[e for r in chunk for e in r.payload.events or ()])) for chunk in chunks]
    return [r for r in rows if not isinstance(r.payload, EventsMessage)] + merged
