"""The real process: `python -m noetl_api_shard` on a free port, driven by HTTP and by the real
`noetl` CLI (PyPI noetl 5.3.2); start-up failures exit with one clear line."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from .conftest import ENCRYPTION_KEY, INTERNAL_TOKEN, free_port
from .playbooks import HELLO

NOETL_CLI = Path(sys.executable).parent / "noetl"


def shard_env(dbs, port: int, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOETL_")}
    env.update({
        "NOETL_SHARD_INDEX": "0", "NOETL_SHARD_COUNT": "1",
        "NOETL_SHARD_DSN": dbs.shard_dsn, "NOETL_CLUSTER_DSN": dbs.cluster_dsn,
        "NOETL_ENCRYPTION_KEY": ENCRYPTION_KEY, "NOETL_INTERNAL_API_TOKEN": INTERNAL_TOKEN,
        "NOETL_HTTP_HOST": "127.0.0.1", "NOETL_HTTP_PORT": str(port),
        "NOETL_DB_POOL_MIN": "1", "NOETL_DB_POOL_MAX": "4",
    })
    env.update(overrides)
    return env


async def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"api-shard exited early with {proc.returncode}: {proc.stderr.read().decode()}")
            try:
                async with session.get(f"{base}/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("api-shard did not become ready in time")


@pytest_asyncio.fixture
async def shard_process(database_factory):
    dbs = await database_factory()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "noetl_api_shard"], env=shard_env(dbs, port),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(base, proc)
        yield base, port, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_cli(port: int, home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("NOETL_")}, "HOME": str(home)}
    return subprocess.run([str(NOETL_CLI), "--host", "127.0.0.1", "--port", str(port), *args],
                          capture_output=True, text=True, timeout=60, env=env)


async def test_process_serves_and_stops_cleanly(shard_process):
    base, _, proc = shard_process
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/api/health") as resp:
            assert resp.status == 200 and (await resp.json())["status"] == "ok"
        async with session.get(f"{base}/api/internal/ping",
                               headers={"Authorization": f"Bearer {INTERNAL_TOKEN}"}) as resp:
            assert resp.status == 200
        async with session.get(f"{base}/metrics") as resp:
            assert 'shard="0"' in await resp.text()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    logs = proc.stderr.read().decode().strip().splitlines()
    assert logs and all(json.loads(line)["service"] == "api-shard" for line in logs)


@pytest.mark.skipif(not NOETL_CLI.exists(), reason="the noetl CLI is not installed in this virtualenv")
async def test_real_noetl_cli_registers_and_lists(shard_process, tmp_path):
    _, port, _ = shard_process
    playbook_file = tmp_path / "hello.yaml"
    playbook_file.write_text(HELLO)
    registered = await asyncio.to_thread(run_cli, port, tmp_path, "register", "playbook", "--file", str(playbook_file))
    assert registered.returncode == 0, registered.stderr
    assert "registered successfully" in registered.stdout
    assert "Resource 'tests/hello_world' version '1' registered." in registered.stdout

    listed = await asyncio.to_thread(run_cli, port, tmp_path, "catalog", "list", "Playbook")
    assert listed.returncode == 0, listed.stderr
    payload = json.loads(listed.stdout[listed.stdout.index("{"):])
    assert [(e["path"], e["version"], e["kind"]) for e in payload["entries"]] == [("tests/hello_world", 1, "Playbook")]

    cred_file = tmp_path / "cred.json"
    cred_file.write_text(json.dumps({"name": "cli_pg", "type": "postgres", "data": {"password": "cli-secret"}}))
    cred = await asyncio.to_thread(run_cli, port, tmp_path, "register", "credential", "--file", str(cred_file))
    assert cred.returncode == 0, cred.stderr
    assert '"name":"cli_pg"' in cred.stdout.replace(" ", "") and "cli-secret" not in cred.stdout


def _run_main(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "noetl_api_shard"], env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("overrides,fragment", [
    ({"NOETL_SHARD_DSN": ""}, "NOETL_SHARD_DSN is required"),
    ({"NOETL_ENCRYPTION_KEY": "not-base64!"}, "NOETL_ENCRYPTION_KEY is not valid base64"),
    ({"NOETL_SHARD_INDEX": "3", "NOETL_SHARD_COUNT": "2"}, "NOETL_SHARD_INDEX 3 must be < NOETL_SHARD_COUNT 2"),
    ({"NOETL_HTTP_PORT": "http"}, "NOETL_HTTP_PORT must be an integer"),
])
async def test_configuration_errors_exit_2_with_one_line(database_factory, overrides, fragment):
    dbs = await database_factory()
    result = await asyncio.to_thread(_run_main, shard_env(dbs, free_port(), **overrides))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], result.stderr


async def test_unreachable_database_fails_start_up_clearly(database_factory):
    dbs = await database_factory()
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    result = await asyncio.to_thread(_run_main, shard_env(dbs, free_port(), NOETL_SHARD_DSN=dead))
    assert result.returncode == 1
    assert "start-up failed" in result.stderr
    assert "Traceback" not in result.stderr
