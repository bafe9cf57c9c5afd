"""A step result over the event-log limit through the whole fleet: the shard stores it and keeps a
stub, yet a later step's template (on the shard), a loop's `in` and a pipeline task's template (on
the worker) each read its dropped fields, loaded from the result store; the log replays."""

from __future__ import annotations

from .conftest import register, wait_terminal

PLAYBOOK = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: large_results, path: tests/large_results}
workflow:
  - step: start
    tool: {kind: python, code: "result = {'count': 2000, 'rows': [{'id': i, 'pad': 'p' * 100} for i in range(2000)]}"}
    next: [{step: middle}]
  - step: middle
    tool: {kind: python, input: {count: "{{ start.count }}"}, code: "result = {'count': count}"}
    next: [{step: each}]
  - step: each
    loop: {in: "{{ start.rows[1997:] }}", iterator: row, spec: {mode: sequential}}
    tool: {kind: python, input: {id: "{{ row.id }}"}, code: "result = {'id': id}"}
    next: [{step: piped}]
  - step: piped
    tool:
      - name: read
        kind: python
        input: {n: "{{ start.rows | length }}", fifth: "{{ start.rows[5].id }}", count: "{{ start.count }}"}
        code: "result = {'n': n, 'fifth': fifth, 'count': count}"
    next: [{step: end}]
  - step: end
    tool:
      kind: python
      input: {piped: "{{ piped.read }}", ids: "{{ each.results | map(attribute='id') | list }}"}
      code: "result = {'piped': piped, 'ids': ids}"
"""


async def test_a_stored_result_is_read_past_its_stub_on_the_shard_in_a_loop_and_in_a_pipeline(live_fleet, http):
    router = live_fleet.router
    await register(http, router, PLAYBOOK)
    async with http.post(f"{router}/api/execute", json={"path": "tests/large_results"}) as r:
        execution_id = (await r.json())["execution_id"]
    status = await wait_terminal(http, router, execution_id, timeout=180)
    assert status["status"] == "COMPLETED", status
    assert status["result"] == {"piped": {"n": 2000, "fifth": 5, "count": 2000}, "ids": [1997, 1998, 1999]}
    async with http.get(f"{router}/api/executions/{execution_id}/status?steps=true") as r:
        steps = (await r.json())["steps"]
    assert steps["start"]["count"] == 2000 and "rows" not in steps["start"] and steps["start"]["_ref"]["ref"]
    async with http.get(f"{router}/api/replay/state", params={"execution_id": execution_id}) as r:
        replay = await r.json()
    assert replay["matches"], replay
