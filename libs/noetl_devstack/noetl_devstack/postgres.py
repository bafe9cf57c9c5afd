"""Embedded Postgres: system binaries (initdb/pg_ctl) when present, else the `pgserver` wheel.

Postgres refuses to run as root; as root we run the server as an unprivileged system user
(created once with useradd) that owns the data directory.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

import asyncpg

from .errors import StartError
from .nats import stop_pid
from .ports import free_port, port_open

RUN_AS = "noetl"
# Durable, as in production, unless "fast" is asked for by name (NOETL_DEVSTACK_PG_DURABILITY):
# fast drops the WAL flush at commit, so a crash of Postgres may lose acknowledged commits.
DURABLE, FAST = "durable", "fast"
DURABILITY_ENV = "NOETL_DEVSTACK_PG_DURABILITY"
SERVER_SETTINGS = ("max_connections=400", "shared_buffers=128MB")
FAST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")
TUNING_MARKER = "# noetl_devstack tuning"


def durability_of(env: dict[str, str] | os._Environ[str]) -> str:
    value = env.get(DURABILITY_ENV) or DURABLE
    if value not in (DURABLE, FAST):
        raise StartError("postgres", f"{DURABILITY_ENV} must be {DURABLE!r} or {FAST!r}, not {value!r}")
    return value


def settings_for(durability: str) -> tuple[str, ...]:
    return SERVER_SETTINGS + (FAST_SETTINGS if durability == FAST else ())


PG_DURABILITY = ("fsync", "synchronous_commit", "full_page_writes")


def postgres_verdict(settings: dict[str, str]) -> dict:
    """Durable: a commit is on disk before it is acknowledged, and a torn page can be repaired."""
    durable = (settings.get("fsync") == "on" and settings.get("synchronous_commit") != "off"
               and settings.get("full_page_writes") == "on")
    return {**settings, "durable": durable}


async def server_durability(conn: asyncpg.Connection) -> dict:
    """What a running server says of its durability settings, with the verdict (for a report)."""
    return postgres_verdict({name: await conn.fetchval(f"SHOW {name}") for name in PG_DURABILITY})


def find_pg_bin() -> Path | None:
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(os.path.realpath(initdb)).parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True):
        return Path(candidate).parent
    return None


def _ensure_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(RUN_AS)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", RUN_AS],
                       check=True, capture_output=True)
        return pwd.getpwnam(RUN_AS)


def _make_traversable(path: Path) -> None:
    """The unprivileged server user must be able to reach its data dir through every parent."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if mode & 0o011 != 0o011:
            os.chmod(parent, mode | 0o011)


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, *, mode: str | None = None, durability: str = DURABLE) -> None:
        self.data_dir = data_dir
        self.mode = mode or os.environ.get("NOETL_DEVSTACK_PG") or ("system" if find_pg_bin() else "pgserver")
        self.durability = durability
        self.log_file = data_dir / "postgres.log"

    # --- system binaries -------------------------------------------------------------------
    def _run(self, args: list[str], **kw) -> subprocess.CompletedProcess:
        user = None
        if os.geteuid() == 0:
            entry = _ensure_user()
            user = entry.pw_uid
            kw.setdefault("group", entry.pw_gid)
            kw.setdefault("extra_groups", [])
        return subprocess.run(args, user=user, capture_output=True, text=True, **kw)

    def _start_system(self, port: int) -> str:
        bin_dir = find_pg_bin()
        if bin_dir is None:
            raise StartError("postgres", "no initdb/pg_ctl found (set NOETL_DEVSTACK_PG=pgserver)")
        pgdata = self.data_dir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            entry = _ensure_user()
            _make_traversable(self.data_dir)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
            if pgdata.exists():
                os.chown(pgdata, entry.pw_uid, entry.pw_gid)
        if not (pgdata / "PG_VERSION").exists():
            res = self._run([str(bin_dir / "initdb"), "-D", str(pgdata), "-U", "postgres", "-A", "trust",
                             "-E", "UTF8", "--no-sync"])
            if res.returncode != 0:
                raise StartError("postgres", f"initdb exited {res.returncode}: {res.stderr.strip()[-800:]}")
        settings = ("listen_addresses=127.0.0.1", *settings_for(self.durability))
        options = " ".join(["-p", str(port), "-k", str(self.data_dir), *(f"-c {c}" for c in settings)])
        res = self._run([str(bin_dir / "pg_ctl"), "-D", str(pgdata), "-l", str(self.log_file), "-o", options,
                         "-w", "-t", "60", "start"])
        if res.returncode != 0:
            raise StartError("postgres", f"pg_ctl start exited {res.returncode}: {res.stdout.strip()[-400:]}",
                             self.log_file)
        return f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _stop_system(self) -> None:
        bin_dir = find_pg_bin()
        pgdata = self.data_dir / "data"
        if bin_dir and (pgdata / "postmaster.pid").exists():
            self._run([str(bin_dir / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "-t", "30", "stop"])

    # --- pgserver wheel ---------------------------------------------------------------------
    def _start_pgserver(self) -> str:
        try:
            import pgserver
        except ImportError as exc:
            raise StartError("postgres", f"no system Postgres and the pgserver wheel is missing ({exc})") from None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pgdata = self.data_dir / "pgserver"
        try:
            server = pgserver.get_server(pgdata, cleanup_mode=None)
            # pgserver runs initdb and starts in one call, so the tuning lands in postgresql.conf
            # afterwards and takes effect with one restart, when it changed.
            conf = pgdata / "postgresql.conf"
            text = conf.read_text()
            base = text.split(f"\n{TUNING_MARKER}", 1)[0]
            wanted = f"\n{TUNING_MARKER} ({self.durability})\n" + "\n".join(settings_for(self.durability)) + "\n"
            if base + wanted != text:
                conf.write_text(base + wanted)
                self._stop_pgserver()
                server.ensure_postgres_running()
        except Exception as exc:
            raise StartError("postgres", f"pgserver: {exc}", pgdata / "log") from None
        # pgserver listens on a unix socket only; asyncpg reaches it through host=<socket dir>.
        return f"postgresql://postgres@/postgres?host={server.get_postmaster_info().socket_dir}"

    def _stop_pgserver(self) -> None:
        # The postmaster's pid is the first line of postmaster.pid; SIGINT is Postgres' "fast"
        # shutdown (SIGTERM would wait for every client to disconnect).
        pidfile = self.data_dir / "pgserver" / "postmaster.pid"
        if pidfile.exists():
            stop_pid(int(pidfile.read_text().split()[0]), timeout=30, sig=signal.SIGINT)

    # --- public -----------------------------------------------------------------------------
    def start(self, port: int | None = None) -> str:
        """Start (or reuse) the server; returns an admin DSN."""
        if self.mode == "pgserver":
            return self._start_pgserver()
        port = port or free_port()
        dsn = self._start_system(port)
        deadline = time.monotonic() + 30
        while not port_open(port):
            if time.monotonic() > deadline:
                raise StartError("postgres", f"not accepting connections on port {port}", self.log_file)
            time.sleep(0.1)
        return dsn

    def stop(self) -> None:
        if self.mode == "pgserver":
            self._stop_pgserver()
        else:
            self._stop_system()


def postmaster_pid(data_dir: Path, mode: str) -> int | None:
    """The running postmaster's pid (first line of postmaster.pid) of an embedded server under
    `data_dir`, or None (not started here, or stopped). Its backends are its children."""
    pidfile = data_dir / ("pgserver" if mode == "pgserver" else "data") / "postmaster.pid"
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def with_database(admin_dsn: str, name: str) -> str:
    """The same server DSN pointing at another database."""
    from urllib.parse import urlsplit, urlunsplit
    parts = urlsplit(admin_dsn)
    return urlunsplit(parts._replace(path="/" + name))


async def ensure_databases(admin_dsn: str, names: list[str], template: str | None = None) -> dict[str, str]:
    """Create each database unless it exists (idempotent), as a copy of `template` when one is
    named (nobody may be connected to it); returns name -> DSN."""
    copy_of = f' TEMPLATE "{template}"' if template else ""
    conn = await asyncpg.connect(admin_dsn)
    try:
        existing = {r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database")}
        for name in names:
            if name not in existing:
                try:
                    await conn.execute(f'CREATE DATABASE "{name}"{copy_of}')
                except asyncpg.DuplicateDatabaseError:
                    pass  # created concurrently
    finally:
        await conn.close()
    return {name: with_database(admin_dsn, name) for name in names}


async def drop_databases(admin_dsn: str, names: list[str]) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
