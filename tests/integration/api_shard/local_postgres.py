"""A throwaway Postgres cluster from the system binaries, for when the suite's shared
infrastructure fixture is not available (e.g. running this folder on its own)."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from typing import Iterator

import pytest


def _bin_dir() -> str | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(os.path.dirname(on_path))
    return next((d for d in candidates if os.path.exists(os.path.join(d, "initdb"))), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_user(cmd: list[str], user: str | None) -> list[str]:
    # Postgres refuses to run as root: drop to an unprivileged account.
    return ["runuser", "-u", user, "--", *cmd] if user else cmd


@contextlib.contextmanager
def local_postgres() -> Iterator[str]:
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("no Postgres available: set NOETL_TEST_PG_ADMIN_DSN or install the postgres binaries")
    user = None
    if os.geteuid() == 0:
        user = next((u for u in ("postgres", "nobody") if _has_user(u)), None)
    root = tempfile.mkdtemp(prefix="noetl-pg-")
    data = os.path.join(root, "data")
    if user:
        os.chown(root, pwd.getpwnam(user).pw_uid, -1)
    port = _free_port()
    subprocess.run(_as_user([f"{bin_dir}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                            user), check=True, capture_output=True)
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300"
    subprocess.run(_as_user([f"{bin_dir}/pg_ctl", "-D", data, "-o", options, "-l", f"{root}/log", "-w", "start"],
                            user), check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_user([f"{bin_dir}/pg_ctl", "-D", data, "-m", "immediate", "stop"], user),
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
