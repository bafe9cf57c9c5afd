"""A worker with more slots than one eager offer may ask for (WORKER_MAX_CONCURRENT above 64, as
the scale bench sizes them) still gets its outcomes taken: it offered 1 + its spare slots, the
shard refused every such batch with 422 (eager.slots <= 64) and the worker gave its results up, so
no multi-step execution finished."""

from __future__ import annotations

from .conftest import own_fleet, register, wait_terminal

THREE_STEPS = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: three, path: tests/many_slots_three}
workflow:
  - step: start
    tool: {kind: python, code: "result = {'a': 1}"}
    next: [{step: middle}]
  - step: middle
    tool: {kind: python, input: {a: "{{ start.a }}"}, code: "result = {'b': a + 1}"}
    next: [{step: end}]
  - step: end
    tool: {kind: python, input: {b: "{{ middle.b }}"}, code: "result = {'c': b + 1}"}
"""


async def test_a_worker_with_more_than_64_slots_finishes_executions(http):
    async with own_fleet("noetl-many-slots-", 1, workers=1, extra_env={"WORKER_MAX_CONCURRENT": "100"}) as fleet:
        await register(http, fleet.router, THREE_STEPS)
        async with http.post(f"{fleet.router}/api/execute", json={"path": "tests/many_slots_three"}) as r:
            execution_id = (await r.json())["execution_id"]
        status = await wait_terminal(http, fleet.router, execution_id, timeout=30)
        assert status["status"] == "COMPLETED", status
        assert "answered 422" not in (fleet.logs / "worker-0.log").read_text()
