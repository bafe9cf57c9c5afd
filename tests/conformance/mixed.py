"""python -m tests.conformance.mixed [--executions 50] [--shards 2]

NoETL's own Python worker beside the fleet's, on one pool, and proof that no tool ran twice.

A fleet with one worker of its own and one NoETL worker (whose default segments hold two durable
consumers that both see every shared command) runs `--executions` executions of a playbook at
once. Every tool run appends one line to a file of its own, named by the execution's token, the
step and the loop index, so the tools themselves count their runs. Passes when:
- every execution COMPLETED with the value passed step to step (`{{ step.x }}` and
  `{{ step.context.x }}`), so results from either worker read the same;
- every command the log issued has exactly one mark file holding exactly one line, and exactly one
  `command.claimed` event; no mark file belongs to no command;
- both workers ran commands (else the run did not mix them);
- NoETL's worker got at most one 200 per command from its claims (its HTTP trace), and never
  tore down the durable it shares with the fleet's worker (which runs 32 slots: its consumer
  settings must not follow them).
Prints the counts; exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import re
import sys
import tempfile
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.noetl_worker.process import http_trace

from .__main__ import local_fleet

LOOP_ITEMS = 3
PLAYBOOK = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: run_once, path: tests/mixed/run_once}
workload: {token: "", marks: "", items: [1, 2, 3]}
workflow:
  - step: start
    tool:
      kind: python
      input: {token: "{{ workload.token }}", marks: "{{ workload.marks }}"}
      code: |
        import os
        with open(os.path.join(marks, token + ".start"), "a") as f:
            f.write(str(os.getpid()) + "\\n")
        result = {"greeting": "hello " + token}
    next: [{step: fan}]
  - step: fan
    loop: {in: "{{ workload.items }}", iterator: it}
    tool:
      kind: python
      input: {token: "{{ workload.token }}", marks: "{{ workload.marks }}", it: "{{ it }}",
              greeting: "{{ start.greeting }}"}
      code: |
        import os
        with open(os.path.join(marks, token + ".fan." + str(it)), "a") as f:
            f.write(str(os.getpid()) + "\\n")
        result = {"n": it * 10, "greeting": greeting}
    next: [{step: check}]
  - step: check
    tool:
      kind: python
      input: {token: "{{ workload.token }}", marks: "{{ workload.marks }}",
              plain: "{{ start.greeting }}", via_context: "{{ start.context.greeting }}"}
      code: |
        import os
        with open(os.path.join(marks, token + ".check"), "a") as f:
            f.write(str(os.getpid()) + "\\n")
        result = {"plain": plain, "via_context": via_context}
    next: [{step: end}]
  - step: end
    tool:
      kind: python
      input: {token: "{{ workload.token }}", marks: "{{ workload.marks }}", seen: "{{ check.plain }}"}
      code: |
        import os
        with open(os.path.join(marks, token + ".end"), "a") as f:
            f.write(str(os.getpid()) + "\\n")
        result = {"seen": seen}
"""
FLEET_WORKER = "worker-0"
RECREATED = "Recreating durable consumer"  # NoETL's worker's log line when it tears a durable down
CLAIM = re.compile(r"/api/commands/(\d+)/claim$")


def mark_name(token: str, step: str, iteration: Any) -> str:
    return f"{token}.{step}" + (f".{iteration + 1}" if iteration is not None else "")


async def events_of(http: aiohttp.ClientSession, router: str, execution_id: str) -> list[dict]:
    async with http.get(f"{router}/api/executions/{execution_id}/events", params={"page_size": "500"}) as r:
        body = await r.json()
        assert r.status == 200, body
    return body["events"]


async def run_one(http: aiohttp.ClientSession, router: str, marks: Path, gate: asyncio.Semaphore,
                  timeout: float) -> tuple[str, str, dict]:
    token = uuid.uuid4().hex[:12]
    async with gate:
        async with http.post(f"{router}/api/execute", json={"path": "tests/mixed/run_once", "workload": {
                "token": token, "marks": str(marks)}}) as r:
            started = await r.json()
            assert r.status == 200, started
    execution_id = started["execution_id"]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with http.get(f"{router}/api/executions/{execution_id}/status", params={"steps": "true"}) as r:
            status = await r.json()
        if status.get("completed") or asyncio.get_running_loop().time() > deadline:
            return token, execution_id, status
        await asyncio.sleep(0.2)


def check_execution(token: str, status: dict, events: list[dict], marks: Path) -> tuple[list[str], Counter]:
    """Problems of one execution, and who claimed its commands."""
    problems: list[str] = []
    where = f"execution {status.get('execution_id')} ({token})"
    if status.get("status") != "COMPLETED":
        return [f"{where}: {status.get('status')} ({str(status.get('error'))[:200]})"], Counter()
    steps = status.get("steps") or {}
    greeting = f"hello {token}"
    if steps.get("check") != {"plain": greeting, "via_context": greeting} or steps.get("end") != {"seen": greeting}:
        problems.append(f"{where}: results not passed as NoETL does: check={steps.get('check')} end={steps.get('end')}")
    issued = [e for e in events if e["event_type"] == "command.issued"]
    claims = Counter(str(e["command_id"]) for e in events if e["event_type"] == "command.claimed")
    expected: set[str] = set()
    for e in issued:
        name = mark_name(token, e["node_name"], e.get("iteration"))
        expected.add(name)
        path = marks / name
        runs = len(path.read_text().splitlines()) if path.exists() else 0
        if runs != 1:
            problems.append(f"{where}: the tool of command {e['command_id']} ({name}) ran {runs} times")
        if claims[str(e["command_id"])] != 1:
            problems.append(f"{where}: command {e['command_id']} claimed {claims[str(e['command_id'])]} times")
    stray = {p.name for p in marks.glob(f"{token}.*")} - expected
    if stray:
        problems.append(f"{where}: tools ran for no issued command: {sorted(stray)}")
    if len(issued) != 3 + LOOP_ITEMS:
        problems.append(f"{where}: {len(issued)} commands issued, expected {3 + LOOP_ITEMS}")
    workers = Counter(e["worker_id"] for e in events if e["event_type"] == "command.claimed")
    return problems, workers


async def mixed_run(executions: int, shards: int, timeout: float = 300.0) -> int:
    with tempfile.TemporaryDirectory(prefix="noetl-mixed-") as scratch:
        marks = Path(scratch)
        async with local_fleet(marks, shards, workers=1, external=1, trace=True,
                               env={"WORKER_MAX_CONCURRENT": "32"}) as fleet:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
                async with http.post(f"{fleet.router}/api/catalog/register", json={
                        "content": base64.b64encode(PLAYBOOK.encode()).decode(), "resource_type": "Playbook"}) as r:
                    assert r.status == 200, await r.text()
                gate = asyncio.Semaphore(25)
                runs = await asyncio.gather(*(run_one(http, fleet.router, marks, gate, timeout)
                                              for _ in range(executions)))
                problems: list[str] = []
                workers: Counter = Counter()
                for token, execution_id, status in runs:
                    found, who = check_execution(token, {**status, "execution_id": execution_id},
                                                 await events_of(http, fleet.router, execution_id), marks)
                    problems += found
                    workers += who
            trace = http_trace(fleet.work / "logs" / f"{fleet.noetl_workers[0]}.trace.jsonl")
            log = (fleet.work / "logs" / f"{fleet.noetl_workers[0]}.log").read_text(errors="replace")
        if RECREATED in log:
            problems.append("NoETL's worker deleted and recreated a durable consumer it shares with the fleet's worker")
        noetl_claims = [(m.group(1), t.get("status")) for t in trace if t["method"] == "POST"
                        for m in [CLAIM.search(t["url"])] if m]
        granted = Counter(command for command, status in noetl_claims if status == 200)
        refused = Counter(status for _, status in noetl_claims if status != 200)
        problems += [f"NoETL's worker was granted command {c} {n} times" for c, n in granted.items() if n > 1]
        fleet_ran = workers.get(FLEET_WORKER, 0)  # fleet_specs names its workers worker-<n>
        noetl_ran = sum(workers.values()) - fleet_ran
        if not fleet_ran or not noetl_ran:
            problems.append(f"the run did not mix the workers: claims by worker {dict(workers)}")
        for p in problems:
            print(f"FAIL {p}")
        print(f"{executions} executions, {sum(workers.values())} commands, each tool run once: "
              f"{'no' if problems else 'yes'}; the fleet's worker ran {fleet_ran}, NoETL's {noetl_ran}; "
              f"NoETL's claims: {len(granted)} granted, refused {dict(refused)}", flush=True)
        return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.conformance.mixed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executions", type=int, default=50)
    parser.add_argument("--shards", type=int, default=2)
    args = parser.parse_args(argv)
    if args.executions < 1:
        parser.error("--executions must be >= 1")
    return asyncio.run(mixed_run(args.executions, args.shards))


if __name__ == "__main__":
    sys.exit(main())
