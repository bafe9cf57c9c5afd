"""Stored results (over the event-log limit, `_ref`/`_store`) kept as stubs in the execution's data
and loaded only where a template reads past the stub (engine.stored, dsl.lazy)."""

import json

import msgspec

from noetl_common.engine import EngineEvent, ExecutionData, IssueCommand, apply, start
from noetl_common.engine.stored import STUB_BYTES, compact

from .helpers import minter, playbook, py

BLOB = "x" * 300_000


def ref(n):
    return {"kind": "result_ref", "ref": f"noetl://execution/1/result/s/{n}", "store": "db"}


def stored(value, n):
    """A result as the shard hands a stored one to the engine (step_results.with_ref)."""
    return {**value, "_ref": ref(n), "_store": "db"}


def issued(decisions):
    return [d for d in decisions if isinstance(d, IssueCommand)]


class Store:
    """The caller's `resolve`: values by reference uri, counting the loads."""

    def __init__(self, values):
        self.values = values
        self.loads = []

    def __call__(self, reference):
        self.loads.append(reference["ref"])
        return self.values.get(reference["ref"])


def done(pb, state, cmd, result, mint, data, resolve=None):
    return apply(pb, state, EngineEvent(kind="command_done", command_id=cmd.command_id, result=result),
                 now_ms=1, mint=mint, data=data, resolve=resolve)


def test_compact_keeps_the_reference_and_small_fields_only():
    value = stored({"status": "ok", "count": 3, "blob": BLOB, "rows": [{"id": i} for i in range(5000)],
                    "meta": {"a": 1}}, 1)
    stub = compact(value)
    assert stub == {"status": "ok", "count": 3, "meta": {"a": 1}, "_ref": ref(1), "_store": "db"}
    assert compact({"blob": BLOB}) == {"blob": BLOB}, "a result kept inline stays whole"
    many = stored({f"k{i}": "v" * 500 for i in range(100)}, 2)
    assert len(msgspec.json.encode(compact(many))) < STUB_BYTES + 200


def test_large_loop_results_stay_stubs_in_the_data_the_aggregate_and_later_commands():
    pb = playbook({"step": "work", "loop": {"in": "{{ [1, 2, 3] }}", "iterator": "n"},
                   "tool": [{"name": "a", "kind": "python", "code": "x"}], "next": "sum"},
                  {"step": "sum", "tool": [{"name": "b", "kind": "python", "code": "y"}],
                   "input": {"all": "{{ work }}"}})
    mint = minter()
    data = ExecutionData()
    state, ds = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=mint, data=data)
    while issued(ds)[0].step == "work":
        cmd = issued(ds)[0]  # sequential: one iteration at a time
        i = cmd.iteration
        envelope = stored({"result": {"n": i}, "tasks": {"a": {"n": i, "blob": BLOB}}, "ctx_updates": {}}, i)
        state, ds = done(pb, state, cmd, envelope, mint, data)
    (summed,) = issued(ds)
    assert data.holds_stored
    encoded = len(msgspec.json.encode([summed.input, summed.context, data.results]))
    assert encoded < 20_000, f"the aggregate and the next command carry the stubs, not the blobs ({encoded} bytes)"
    results = data.results["work"]["results"]
    assert [r["n"] for r in results] == [0, 1, 2] and all(r["_ref"] == ref(i) for i, r in enumerate(results))


def test_a_template_reading_past_the_stub_loads_the_value_once_and_a_kept_field_loads_nothing():
    pb = playbook({"step": "big", "tool": [{"name": "gen", "kind": "python", "code": "x"}], "next": "use"},
                  {"step": "use", "tool": py("y", input={"count": "{{ big.count }}"}), "next": "rows"},
                  {"step": "rows", "tool": py("z", input={"first": "{{ big.rows[0] }}", "n": "{{ big.rows | length }}",
                                                          "whole": "{{ big }}", "data": "{{ big.data.rows[1] }}",
                                                          "text": "n={{ big | tojson }}"})})
    mint = minter()
    data = ExecutionData()
    rows = [{"id": i, "pad": "p" * 100} for i in range(2000)]
    envelope = stored({"result": {"count": 2000, "rows": rows}, "tasks": {"gen": {"count": 2000, "rows": rows}},
                       "ctx_updates": {}}, 7)
    store = Store({ref(7)["ref"]: {k: v for k, v in envelope.items() if k not in ("_ref", "_store")}})
    state, ds = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=mint, data=data)
    state, ds = done(pb, state, issued(ds)[0], envelope, mint, data, store)
    (use,) = issued(ds)
    assert use.input == {"count": 2000} and store.loads == []
    state, ds = done(pb, state, use, {"ok": True}, mint, data, store)
    (second,) = issued(ds)
    assert second.input["first"] == rows[0] and second.input["n"] == 2000 and second.input["data"] == rows[1]
    assert second.input["whole"]["_ref"] == ref(7) and "rows" not in second.input["whole"], "a whole read is the stub"
    assert json.loads(second.input["text"][2:]) == second.input["whole"], "text renders the stub as JSON"
    assert store.loads == [ref(7)["ref"]], "loaded once for the whole engine call"


def test_the_event_that_brings_a_stored_result_reads_it_whole_without_loading():
    pb = playbook({"step": "big", "tool": py("x"), "set": {"ctx.first": "{{ output.rows[0] }}"},
                   "next": [{"step": "end", "when": "{{ output.rows | length > 1 }}"}]},
                  {"step": "end", "tool": py("e", input={"first": "{{ first }}", "second": "{{ big.rows[1] }}"})})
    mint = minter()
    data = ExecutionData()
    state, ds = start(pb, execution_id=1, workload={}, catalog_id=2, now_ms=0, mint=mint, data=data)
    store = Store({})
    value = stored({"rows": [{"pad": "p" * 3000}, 2]}, 3)
    state, ds = done(pb, state, issued(ds)[0], value, mint, data, store)
    (end,) = issued(ds)
    assert end.input == {"first": {"pad": "p" * 3000}, "second": 2} and store.loads == []
    assert data.results["big"] == {"_ref": ref(3), "_store": "db"}


def test_data_rebuilt_from_rows_knows_it_holds_stubs():
    stub = compact(stored({"blob": BLOB}, 1))
    assert ExecutionData.from_rows([("s", stub)], [], []).holds_stored
    assert ExecutionData.from_rows([], [("l", 1, 0, [1])], [("l", 1, 0, stub)]).holds_stored
    assert not ExecutionData.from_rows([("s", {"a": 1})], [], []).holds_stored
