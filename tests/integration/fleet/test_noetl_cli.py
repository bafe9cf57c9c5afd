"""The real `noetl` CLI from PyPI pointed at the router: register, run distributed with a
payload, status --json, catalog list, cancel — each answering with the expected data."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from .conftest import wait_terminal

NOETL_CLI = Path(sys.executable).parent / "noetl"
PLAYBOOK = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: cli_fleet, path: tests/cli_fleet}
workload: {greeting: hello, pause: 0}
workflow:
  - step: start
    tool:
      kind: python
      input: {greeting: "{{ workload.greeting }}", pause: "{{ workload.pause }}"}
      code: |
        import time
        time.sleep(float(pause))
        result = {"said": greeting}
    next: [{step: end}]
  - step: end
    tool: {kind: python, code: "result = {'ok': True}"}
"""

pytestmark = pytest.mark.skipif(not NOETL_CLI.exists(), reason="the noetl CLI is not installed in this virtualenv")


def cli(router: str, home: Path, *args: str) -> subprocess.CompletedProcess:
    parts = urlsplit(router)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("NOETL_")}, "HOME": str(home)}
    return subprocess.run([str(NOETL_CLI), "--host", parts.hostname, "--port", str(parts.port), *args],
                          capture_output=True, text=True, timeout=60, env=env)


def json_in(text: str) -> dict:
    return json.loads(text[text.index("{"):text.rindex("}") + 1])


async def run_cli(live_fleet, home: Path, *args: str) -> subprocess.CompletedProcess:
    result = await asyncio.to_thread(cli, live_fleet.router, home, *args)
    assert result.returncode == 0, f"noetl {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


async def test_noetl_cli_against_the_router(live_fleet, http, tmp_path):
    book = tmp_path / "cli_fleet.yaml"
    book.write_text(PLAYBOOK)
    reg = await run_cli(live_fleet, tmp_path, "register", "playbook", "--file", str(book))
    assert "tests/cli_fleet" in reg.stdout

    listed = await run_cli(live_fleet, tmp_path, "catalog", "list", "Playbook")
    assert "tests/cli_fleet" in [e["path"] for e in json_in(listed.stdout)["entries"]]

    ran = await run_cli(live_fleet, tmp_path, "run", "tests/cli_fleet", "-r", "distributed",
                        "--payload", json.dumps({"greeting": "from the cli"}), "--json")
    execution_id = str(json_in(ran.stdout)["execution_id"])
    assert re.fullmatch(r"\d+", execution_id)
    await wait_terminal(http, live_fleet.router, execution_id)
    status = json_in((await run_cli(live_fleet, tmp_path, "status", execution_id, "--json")).stdout)
    assert status["execution_id"] == execution_id and status["status"] == "COMPLETED"
    async with http.get(f"{live_fleet.router}/api/executions/{execution_id}/status",
                        params={"steps": "true"}) as r:
        assert (await r.json())["steps"]["start"] == {"said": "from the cli"}

    slow = await run_cli(live_fleet, tmp_path, "run", "tests/cli_fleet", "-r", "distributed",
                         "--payload", json.dumps({"pause": 30}), "--json")
    slow_id = str(json_in(slow.stdout)["execution_id"])
    cancelled = await run_cli(live_fleet, tmp_path, "cancel", slow_id, "--reason", "test", "--json")
    assert json_in(cancelled.stdout)["execution_id"] == slow_id
    final = await wait_terminal(http, live_fleet.router, slow_id)
    assert final["status"] == "CANCELLED"


async def test_noetl_query_db_and_catalog_from_make_runs_machine(live_fleet, http, tmp_path):
    # No token anywhere: the CLI sends none, and make run trusts its own machine (loopback).
    queried = await run_cli(live_fleet, tmp_path, "query", "select 1 as one", "--format", "json")
    answer = json_in(queried.stdout)
    assert answer["status"] == "ok" and answer["result"] == [[1]] and answer["database"] == "cluster"
    table = await run_cli(live_fleet, tmp_path, "query", "select 41 + 1 as answer, 'x' as letter")
    assert re.search(r"│ answer +│ letter +│\n.*\n│ 42 +│ x +│", table.stdout), table.stdout
    assert "(1 rows)" in table.stdout

    validated = await run_cli(live_fleet, tmp_path, "db", "validate")
    answer = json_in(validated.stdout)
    assert answer["valid"] is True and answer["missing"] == []
    assert {"cluster", "shard 0", "shard 1", "shard 2"} == {d["database"] for d in answer["databases"]}
    initialised = await run_cli(live_fleet, tmp_path, "db", "init")
    assert json_in(initialised.stdout)["status"] == "ok"

    listed = await run_cli(live_fleet, tmp_path, "catalog", "list", "Playbook")
    assert "entries" in json_in(listed.stdout)
