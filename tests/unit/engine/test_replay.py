"""replay(log) == incremental state and data, for any order in which parallel work completes."""

import asyncio

import msgspec
from hypothesis import given, settings, strategies as st

from noetl_common.engine import DataWrite, ExecutionData, LoopItems, State, StepResult, apply, checksum, \
    replay, start
from noetl_common.engine.simulator import Simulator
from noetl_common.tools import ToolResult, run_python

from .helpers import playbook, py

PB = playbook(
    {"step": "start", "tool": py("result = {'n': 1}"), "next": {"spec": {"mode": "inclusive"},
                                                                  "arcs": [{"step": "fan"}, {"step": "side"}]}},
    {"step": "fan", "tool": py("result = {'sq': x * x}", input={"x": "{{ item }}"}),
     "loop": {"in": "{{ xs }}", "iterator": "item", "spec": {"mode": "parallel", "max_in_flight": 3}},
     "next": "join"},
    {"step": "side", "tool": py("result = {'s': 1}"), "set": {"ctx.side": "{{ output.s }}"}, "next": "join"},
    {"step": "join", "tool": py("result = {'total': sum(r['sq'] for r in fan['results'])}", input={"fan": "{{ fan }}"})},
    workload={"xs": list(range(8))})

# Every loop flavour at once: parallel (capped), sequential, and a cursor loop claiming frames.
LOOPS = playbook(
    {"step": "start", "tool": py("result = {'n': 1}"),
     "next": {"spec": {"mode": "inclusive"}, "arcs": [{"step": "fan"}, {"step": "seq"}, {"step": "rows"}]}},
    {"step": "fan", "tool": py("result = {'sq': x * x}", input={"x": "{{ item }}"}),
     "loop": {"in": "{{ xs }}", "iterator": "item", "spec": {"mode": "parallel", "max_in_flight": 3}}, "next": "join"},
    {"step": "seq", "tool": py("result = x + 1", input={"x": "{{ item }}"}),
     "loop": {"in": "{{ xs }}", "iterator": "item", "spec": {"mode": "sequential"}}, "next": "join"},
    {"step": "rows", "tool": {"kind": "postgres", "command": "ROW {{ row.id }}"},
     "loop": {"iterator": "row", "cursor": {"kind": "postgres", "claim": "CLAIM {{ __frame_index }}"},
              "spec": {"mode": "cursor", "frame": {"max_rows": 3, "row_concurrency": 2}}}, "next": "join"},
    {"step": "join", "tool": py("result = {'n': len(fan['results']) + len(seq['results']) + len(rows['results'])}",
                                input={"fan": "{{ fan }}", "seq": "{{ seq }}", "rows": "{{ rows }}"})},
    workload={"xs": list(range(5))})
FRAMES = [[{"id": 1}, {"id": 2}, {"id": 3}], [{"id": 4}], []]


async def cursor_tool(kind, config, inputs):
    if kind == "python":
        return run_python(config["code"], inputs)
    command = config["command"]
    if command.startswith("CLAIM"):
        return ToolResult(ok=True, result={"rows": FRAMES[int(command.split()[1])]})
    return ToolResult(ok=True, result={"done": command})


def minter():
    ids = iter(range(1_000_000, 1_000_000 + 10_000))  # the simulator mints from the same start
    return lambda: next(ids)


def persisted_run(pb, log):
    """Drives the engine the way the shard stores it: the State round-trips through msgpack and
    ExecutionData is rebuilt from its journaled rows (also through msgpack) before every event, so
    a write the journal missed would be lost. Yields (state, data) after start and each event."""
    mint = minter()
    results, items, loop_results = [], [], []

    def persist(writes):
        for w in msgspec.msgpack.decode(msgspec.msgpack.encode(writes), type=list[DataWrite]):
            if isinstance(w, StepResult):
                results.append((w.step, w.value))
            elif isinstance(w, LoopItems):
                items.append((w.step, w.run, w.offset, w.items))
            else:
                loop_results.append((w.step, w.run, w.index, w.value))

    data = ExecutionData()
    state, _ = start(pb, execution_id=1, workload={}, catalog_id=1, now_ms=0, mint=mint, data=data)
    persist(data.take_journal())
    yield state, data
    for now_ms, event in log:
        state = msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=State)
        running = {(step, ls.run) for step, ls in state.loops.items()}
        data = ExecutionData.from_rows(results, [r for r in items if r[:2] in running],
                                       [r for r in loop_results if r[:2] in running])
        state, _ = apply(pb, state, event, now_ms=now_ms, mint=mint, data=data)
        persist(data.take_journal())
        yield state, data


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(min_value=0, max_value=10_000))
def test_replay_equals_incremental_state(seed):
    sim = Simulator(seed=seed)
    out = asyncio.run(sim.run(PB))
    assert out.status == "COMPLETED" and out.step_results["join"] == {"total": sum(i * i for i in range(8))}
    replayed, data = replay(PB, execution_id=1, workload={}, catalog_id=1, events=out.log, start_ms=0, mint=minter())
    assert checksum(replayed) == checksum(out.state)
    assert replayed == out.state
    assert data.checksum() == out.data.checksum() and data.results == out.data.results


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(min_value=0, max_value=10_000), cut=st.floats(min_value=0, max_value=1))
def test_replay_of_any_prefix_equals_the_persisted_state_and_data(seed, cut):
    """Mid-run, loops included: a replay of the first k events equals what the shard would hold
    after k events (state from msgpack, data from its rows)."""
    out = asyncio.run(Simulator(seed=seed, tool=cursor_tool).run(LOOPS))
    assert out.status == "COMPLETED", out.error
    assert out.step_results["join"] == {"n": 5 + 5 + 4}
    assert out.step_results["seq"]["results"] == [1, 2, 3, 4, 5]
    k = round(cut * len(out.log))
    for i, (state, data) in enumerate(persisted_run(LOOPS, out.log)):
        if i == k:
            replayed, replayed_data = replay(LOOPS, execution_id=1, workload={}, catalog_id=1, events=out.log[:k],
                                             start_ms=0, mint=minter())
            assert checksum(replayed) == checksum(state) and replayed == state
            assert replayed_data.checksum() == data.checksum()
    assert checksum(state) == checksum(out.state) and data.checksum() == out.data.checksum()


def test_checksum_is_stable_and_sensitive():
    out = asyncio.run(Simulator(seed=1).run(PB))
    again = asyncio.run(Simulator(seed=1).run(PB))
    assert checksum(out.state) == checksum(again.state)
    assert out.data.checksum() == again.data.checksum()
    changed = asyncio.run(Simulator(seed=1).run(PB, {"xs": [1, 2]}))
    assert checksum(changed.state) != checksum(out.state)
    assert changed.data.checksum() != out.data.checksum()
