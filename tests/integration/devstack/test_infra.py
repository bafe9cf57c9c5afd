"""The embedded infrastructure `make run`/`make infra-up` and the suite rely on."""

from __future__ import annotations

import importlib.util
import os
import stat
import subprocess
import sys

import asyncpg
import nats
import pytest

from noetl_devstack import secrets
from noetl_devstack.postgres import ensure_databases, with_database


async def test_postgres_databases_created_idempotently(infra):
    names = ["devstack_probe_a", "devstack_probe_b"]
    first = await ensure_databases(infra.admin_dsn, names)
    second = await ensure_databases(infra.admin_dsn, names)
    assert first == second
    conn = await asyncpg.connect(first["devstack_probe_a"])
    try:
        assert await conn.fetchval("SELECT current_database()") == "devstack_probe_a"
    finally:
        await conn.close()


async def test_jetstream_stream_publish_consume(nats_url):
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="DEVSTACK_PROBE", subjects=["devstack.probe.>"])
        ack = await js.publish("devstack.probe.x", b"hello", headers={"Nats-Msg-Id": "m1"})
        dup = await js.publish("devstack.probe.x", b"hello", headers={"Nats-Msg-Id": "m1"})
        assert dup.duplicate and ack.seq == dup.seq
        sub = await js.pull_subscribe("devstack.probe.>", durable="probe")
        msgs = await sub.fetch(1, timeout=5)
        assert msgs[0].data == b"hello"
        await msgs[0].ack()
        await js.delete_stream("DEVSTACK_PROBE")
    finally:
        await nc.close()


def _infra(*args, data_dir, env=None):
    return subprocess.run([sys.executable, "-m", "noetl_devstack.infra", *args, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


def test_infra_cli_up_status_down_is_idempotent(tmp_path):
    data = tmp_path / "stack"
    up = _infra("up", "--shards", "2", data_dir=data)
    assert up.returncode == 0, up.stderr
    first_dsn = next(line for line in up.stdout.splitlines() if line.startswith("postgres:"))
    again = _infra("up", data_dir=data)
    assert again.returncode == 0 and first_dsn in again.stdout  # reused, not restarted
    status = _infra("status", data_dir=data)
    assert '"postgres":true' in status.stdout and '"nats":true' in status.stdout
    down = _infra("down", data_dir=data)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert '"running":false' in _infra("status", data_dir=data).stdout


def test_unreachable_external_postgres_is_a_clear_error(tmp_path):
    res = _infra("up", data_dir=tmp_path / "x", env={"NOETL_PG_DSN": "postgresql://u@127.0.0.1:1/none"})
    assert res.returncode == 1
    assert "postgres failed to start" in res.stderr and "NOETL_PG_DSN" in res.stderr


def test_dev_secrets_created_once_with_mode_0600(tmp_path):
    path = tmp_path / "secrets.json"
    first = secrets.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secrets.load_or_create(path) == first
    import base64
    assert len(base64.b64decode(first["NOETL_ENCRYPTION_KEY"])) == 32


def test_with_database_keeps_socket_query():
    assert with_database("postgresql://p@/postgres?host=/tmp/s", "db1") == "postgresql://p@/db1?host=/tmp/s"
    assert with_database("postgresql://p@h:5/postgres", "db1") == "postgresql://p@h:5/db1"


def test_nats_on_an_occupied_port_names_the_component_and_shows_its_log(tmp_path):
    import socket

    from noetl_devstack.errors import StartError
    from noetl_devstack.nats import EmbeddedNats

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(StartError) as err:
            EmbeddedNats(tmp_path / "nats").start(port=taken.getsockname()[1])
    message = str(err.value)
    assert message.startswith("nats failed to start") and "nats.log" in message
    assert "address already in use" in message.lower()


def test_unreachable_external_nats_is_a_clear_error(tmp_path, infra):
    # Postgres comes from the suite's server so only NATS can fail; the embedded one is not started.
    res = _infra("up", data_dir=tmp_path / "x",
                 env={"NOETL_PG_DSN": infra.admin_dsn, "NOETL_NATS_URL": "nats://127.0.0.1:1"})
    assert res.returncode == 1
    assert "nats failed to start" in res.stderr and "NOETL_NATS_URL" in res.stderr


def test_missing_service_module_is_a_clear_error(tmp_path):
    from noetl_devstack.errors import StartError
    from noetl_devstack.processes import ServiceSpec, Supervisor

    with pytest.raises(StartError, match="noetl_no_such_service"):
        Supervisor(tmp_path).spawn(ServiceSpec(name="ghost", module="noetl_no_such_service", port=1))


async def test_a_port_answered_by_another_process_is_a_start_error(tmp_path):
    """Another process took the port picked for a service (the child then fails to bind and exits,
    but the other one answers ready): the start fails and says so, instead of passing as ready."""
    from aiohttp.test_utils import TestServer

    from noetl_common.http import build_app
    from noetl_devstack.errors import StartError
    from noetl_devstack.ports import free_port
    from noetl_devstack.processes import ServiceSpec, Supervisor

    port = free_port()
    impostor = TestServer(build_app(service="impostor", max_body_bytes=1024), host="127.0.0.1", port=port)
    await impostor.start_server()
    supervisor = Supervisor(tmp_path)
    try:
        supervisor.spawn(ServiceSpec(name="projector", module="noetl_projector", port=port))
        with pytest.raises(StartError) as failed:
            await supervisor.wait_ready("projector", timeout=30)
        assert f"pid {os.getpid()}" in str(failed.value) or "exited" in str(failed.value)
    finally:
        supervisor.stop_all()
        await impostor.close()


@pytest.mark.skipif(importlib.util.find_spec("pgserver") is None, reason="pgserver wheel not installed")
@pytest.mark.skipif(bool(os.environ.get("NOETL_PG_DSN")), reason="the suite points at an external Postgres")
def test_pgserver_fallback_up_status_down(tmp_path):
    # The path a machine without system Postgres takes; forced here (about 5 s).
    data = tmp_path / "pgs"
    env = {"NOETL_DEVSTACK_PG": "pgserver"}
    up = _infra("up", "--shards", "1", data_dir=data, env=env)
    try:
        assert up.returncode == 0, up.stderr
        assert "(pgserver, " in up.stdout
        status = _infra("status", data_dir=data, env=env)
        assert '"postgres":true' in status.stdout and '"pg_mode":"pgserver"' in status.stdout
    finally:
        down = _infra("down", data_dir=data, env=env)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not (data / "pg" / "pgserver" / "postmaster.pid").exists()


def _durability_settings(up: subprocess.CompletedProcess) -> dict[str, str]:
    import asyncio

    dsn = next(line for line in up.stdout.splitlines() if line.startswith("postgres:")).split()[1]

    async def read() -> dict[str, str]:
        conn = await asyncpg.connect(dsn)
        try:
            return {name: await conn.fetchval(f"SHOW {name}")
                    for name in ("fsync", "synchronous_commit", "full_page_writes")}
        finally:
            await conn.close()
    return asyncio.run(read())


@pytest.mark.skipif(bool(os.environ.get("NOETL_PG_DSN")), reason="the suite points at an external Postgres")
def test_postgres_is_durable_unless_fast_is_asked_for_by_name(tmp_path):
    """Production's durability by default (a commit is on disk when acknowledged); the fast mode
    only when NOETL_DEVSTACK_PG_DURABILITY=fast, and switching restarts the server."""
    data = tmp_path / "dur"
    try:
        up = _infra("up", "--shards", "0", data_dir=data, env={"NOETL_DEVSTACK_PG_DURABILITY": ""})
        assert up.returncode == 0, up.stderr
        assert ", durable)" in up.stdout
        assert _durability_settings(up) == {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
        fast = _infra("up", "--shards", "0", data_dir=data, env={"NOETL_DEVSTACK_PG_DURABILITY": "fast"})
        assert fast.returncode == 0, fast.stderr
        assert _durability_settings(fast) == {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        bad = _infra("up", data_dir=data, env={"NOETL_DEVSTACK_PG_DURABILITY": "sometimes"})
        assert bad.returncode != 0 and "NOETL_DEVSTACK_PG_DURABILITY" in bad.stderr
    finally:
        _infra("down", data_dir=data)
