"""Cancelling an execution frees the worker slot its running step holds: the worker sees on its
keepalive that the command is over and abandons the step (interrupting its thread), instead of
running it to the end, or to the tool timeout, while new work waits."""

from __future__ import annotations

import asyncio

from .conftest import own_fleet, register, wait_terminal

PLAYBOOKS = ["""
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: long, path: tests/long_step}
workflow:
  - step: start
    tool: {kind: python, code: "import time\\nfor _ in range(6000):\\n    time.sleep(0.1)\\nresult = {}"}
""", """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: short, path: tests/short_step}
workflow:
  - step: start
    tool: {kind: python, code: "result = {'ok': True}"}
"""]

# One slot, and keepalives twice a second, so the abandoned step is noticed at once.
ENV = {"WORKER_MAX_CONCURRENT": "1", "NOETL_WORKER_PROGRESS_SECONDS": "0.5"}


async def test_a_cancelled_executions_step_stops_holding_the_workers_only_slot(http):
    async with own_fleet("noetl-cancel-frees-", 1, workers=1, extra_env=ENV) as fleet:
        for playbook in PLAYBOOKS:
            await register(http, fleet.router, playbook)
        async with http.post(f"{fleet.router}/api/execute", json={"path": "tests/long_step"}) as r:
            long_id = (await r.json())["execution_id"]
        await _until_running(http, fleet.router, long_id)
        async with http.post(f"{fleet.router}/api/executions/{long_id}/cancel", json={"reason": "test"}) as r:
            assert r.status == 200, await r.text()
        async with http.post(f"{fleet.router}/api/execute", json={"path": "tests/short_step"}) as r:
            short_id = (await r.json())["execution_id"]
        # The long step would hold the only slot for ten minutes; abandoned, it frees it in seconds.
        status = await wait_terminal(http, fleet.router, short_id, timeout=20)
        assert status["status"] == "COMPLETED", status
        log = (fleet.logs / "worker-0.log").read_text()
        assert "step abandoned" in log


async def _until_running(http, router: str, execution_id: str) -> None:
    """Until the worker has claimed the long step (its command is RUNNING)."""
    for _ in range(100):
        async with http.get(f"{router}/api/executions/{execution_id}") as r:
            body = await r.json()
        if any(e.get("event_type") == "command.started" for e in body.get("events", [])):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{execution_id} never started: {body}")
