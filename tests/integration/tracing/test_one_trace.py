"""One execution through a live fleet with tracing on (console exporter, read back from each
process's log): the spans of router, shard and worker form one trace, they name the execution,
and the shard's log lines for /api/events carry the execution id and the trace id.

The decision this checks (docs/architecture.md, "Tracing"): one trace per execution, each span a
child of the span that caused it — a notified command's span under its publish (the shard's own
announcement; the publisher relays a command, in a PRODUCER span of the same trace, only when
that announcement did not reach JetStream), which is under the shard span that issued the
command; a handed-over command's under the shard span of the outcome batch that handed it over."""

from __future__ import annotations

import asyncio
from typing import Any

from ..fleet.conftest import LiveFleet, register, wait_terminal
from .conftest import read_log

PLAYBOOK = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: traced, path: tests/traced}
workflow:
  - step: start
    tool: {kind: python, code: "result = {'n': 1}"}
    next: [{step: middle}]
  - step: middle
    tool: {kind: python, input: {n: "{{ start.n }}"}, code: "result = {'n': n + 1}"}
    next: [{step: end}]
  - step: end
    tool: {kind: python, input: {n: "{{ middle.n }}"}, code: "result = {'n': n + 1}"}
"""
SERVICES = {"noetl-router", "noetl-api-shard", "noetl-worker"}
RELAY = "noetl-outbox-publisher"  # in the trace only if it relayed a command (see above)


def _hex(value: str | None) -> str | None:
    return value[2:] if value and value.startswith("0x") else value


def _attrs(span: dict[str, Any]) -> dict[str, Any]:
    return span.get("attributes") or {}


def _service(span: dict[str, Any]) -> str:
    return span["resource"]["attributes"]["service.name"]


def _trace(span: dict[str, Any]) -> str:
    return _hex(span["context"]["trace_id"])


def _collect(fleet: LiveFleet) -> tuple[list[dict], dict[str, list[dict]]]:
    spans: list[dict] = []
    lines: dict[str, list[dict]] = {}
    for spec in fleet.specs:
        path = fleet.logs / f"{spec.name}.log"
        if path.exists():
            got, logged = read_log(path)
            spans += got
            lines[spec.name] = logged
    return spans, lines


def _worker_steps(spans: list[dict], execution_id: str) -> set[str]:
    return {_attrs(s).get("noetl.step") for s in spans
            if _service(s) == "noetl-worker" and _attrs(s).get("noetl.execution_id") == execution_id}


async def test_an_execution_is_one_trace_across_router_shard_and_worker(traced_fleet: LiveFleet, http):
    await register(http, traced_fleet.router, PLAYBOOK)
    async with http.post(f"{traced_fleet.router}/api/execute", json={"path": "tests/traced"}) as r:
        assert r.status == 200, await r.text()
        execution_id = (await r.json())["execution_id"]
    status = await wait_terminal(http, traced_fleet.router, execution_id)
    assert status["status"] == "COMPLETED", status
    # A body-routed event through the router: the shard learns the execution from the router's header.
    async with http.post(f"{traced_fleet.router}/api/events",
                         json={"execution_id": execution_id, "event_type": "trace.probe", "step": "end",
                               "payload": {}}) as r:
        assert r.status == 200, await r.text()

    deadline = asyncio.get_running_loop().time() + 20
    while True:  # spans are exported in batches (every 100 ms here)
        spans, lines = _collect(traced_fleet)
        probes = [s for s in spans if _attrs(s).get("url.path") == "/api/events"
                  and _service(s) == "noetl-api-shard"]
        # The shard's publish span too: it ends with JetStream's ack, which may come after the
        # worker's spans are exported.
        announced = any(_service(s) == "noetl-api-shard" and s["kind"] == "SpanKind.PRODUCER"
                        and _attrs(s).get("noetl.execution_id") == execution_id for s in spans)
        if _worker_steps(spans, execution_id) >= {"start", "middle", "end"} and probes and announced:
            break
        assert asyncio.get_running_loop().time() < deadline, (
            f"spans missing: worker steps {_worker_steps(spans, execution_id)}, probe spans {len(probes)}, "
            f"shard publish span {announced}")
        await asyncio.sleep(0.25)

    # The root: the router's span of POST /api/execute, named with the execution it placed.
    roots = [s for s in spans if _service(s) == "noetl-router" and _attrs(s).get("url.path") == "/api/execute"
             and _attrs(s).get("noetl.execution_id") == execution_id]
    assert len(roots) == 1, roots
    root = roots[0]
    assert root["parent_id"] is None
    trace_id = _trace(root)
    in_trace = [s for s in spans if _trace(s) == trace_id]
    by_id = {_hex(s["context"]["span_id"]): s for s in in_trace}

    # Every span of the execution's own work is in that one trace, and the tree is connected.
    assert SERVICES <= {_service(s) for s in in_trace} <= SERVICES | {RELAY}
    for s in in_trace:
        if s is not root:
            assert _hex(s["parent_id"]) in by_id, f"{_service(s)} {s['name']} hangs off a span outside the trace"
    own_work = [s for s in spans if _attrs(s).get("noetl.execution_id") == execution_id
                and (_service(s) in ("noetl-worker", "noetl-outbox-publisher")
                     or _attrs(s).get("http.route") in ("/api/execute", "/api/events/batch",
                                                        "/api/commands/{event_id}/claim"))]
    assert own_work and all(_trace(s) == trace_id for s in own_work), \
        [(_service(s), s["name"], _trace(s)) for s in own_work if _trace(s) != trace_id]

    # What each service contributed, each naming the execution.
    def named(service: str, predicate=lambda s: True) -> list[dict]:
        return [s for s in in_trace if _service(s) == service and predicate(s)
                and _attrs(s).get("noetl.execution_id") == execution_id]

    assert named("noetl-api-shard", lambda s: _attrs(s).get("http.route") == "/api/execute")
    # The shard announces a new command itself right after commit (a PRODUCER span of its own);
    # a relay of it (only if the ack came too late) is a PRODUCER span too, and the worker
    # follows whichever copy JetStream took first.
    announced = named("noetl-api-shard", lambda s: s["kind"] == "SpanKind.PRODUCER")
    relayed = named(RELAY)
    assert announced and all(s["kind"] == "SpanKind.PRODUCER" for s in relayed)
    publishes = relayed + announced
    commands = named("noetl-worker")
    assert {_attrs(s)["noetl.step"] for s in commands} == {"start", "middle", "end"}
    first = next(s for s in commands if _attrs(s)["noetl.step"] == "start")
    assert by_id[_hex(first["parent_id"])] in publishes, "the notified command follows its publish"
    assert len(named("noetl-api-shard", lambda s: _attrs(s).get("http.route") == "/api/events/batch")) >= 3
    claims = named("noetl-api-shard", lambda s: _attrs(s).get("http.route") == "/api/commands/{event_id}/claim")
    assert claims and by_id[_hex(claims[0]["parent_id"])] is first, "the claim is a call of the first command"
    # Inside ingest: the engine's decision and the database transaction, with its statement count.
    engine = [s for s in in_trace if s["name"] == "engine.apply"]
    assert len(engine) >= 3 and all(_attrs(s)["noetl.execution_id"] == execution_id for s in engine)
    txns = [s for s in in_trace if s["name"] == "db.transaction"]
    assert txns and all(_attrs(s)["db.statement_count"] >= 1 for s in txns)
    assert any(_attrs(s)["noetl.txn.mode"] == "optimistic" and _attrs(s)["db.statement_count"] == 1 for s in txns)

    # Shard log lines of /api/events (the probe, routed by its body) and of the worker's batches
    # carry the execution id and the trace id of their request.
    shard_lines = [line for name, logged in lines.items() if name.startswith("api-shard") for line in logged]
    probe_lines = [line for line in shard_lines if line["msg"].startswith("POST /api/events ->")]
    assert probe_lines, "no request log line for POST /api/events on any shard"
    probe_traces = {_trace(s) for s in probes}
    for line in probe_lines:
        assert line.get("execution_id") == execution_id, line
        assert line.get("trace_id") in probe_traces, line
    batch_lines = [line for line in shard_lines if line["msg"].startswith("POST /api/events/batch ->")
                   and line.get("execution_id") == execution_id]
    assert len(batch_lines) >= 3 and all(line.get("trace_id") == trace_id for line in batch_lines), batch_lines
    # The worker's lines name the execution and the command they are about.
    ran = [line for line in lines["worker-0"] if line["msg"].startswith("command ") and " ran in " in line["msg"]
           and line.get("execution_id") == execution_id]
    assert len(ran) == 3 and all(line.get("command_id") and line.get("trace_id") == trace_id for line in ran), ran
