"""`python -m noetl_devstack.infra up|down|status`: embedded Postgres + NATS under a data dir.

NOETL_PG_DSN / NOETL_NATS_URL point at existing servers instead; nothing is started for them.
State (DSNs, URLs, pids) is recorded in <data dir>/infra.json so `up` is idempotent and `down`
knows what to stop.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import msgspec
import nats

from . import secrets
from .errors import StartError
from .nats import EmbeddedNats, pid_alive, stop_pid
from .postgres import DURABLE, EmbeddedPostgres, durability_of, ensure_databases, with_database

CLUSTER_DB = "noetl_cluster"


def shard_db(index: int) -> str:
    return f"noetl_shard_{index}"


class InfraInfo(msgspec.Struct, kw_only=True):
    data_dir: str
    admin_dsn: str
    nats_url: str
    pg_mode: str  # system | pgserver | external
    nats_pid: int | None = None  # None when external
    pg_durability: str = DURABLE  # durable | fast (an embedded server; see postgres.durability_of)

    def cluster_dsn(self) -> str:
        return with_database(self.admin_dsn, CLUSTER_DB)

    def shard_dsns(self, count: int) -> list[str]:
        return [with_database(self.admin_dsn, shard_db(i)) for i in range(count)]


def default_data_dir() -> Path:
    return Path(os.environ.get("NOETL_DATA_DIR") or Path.cwd() / ".data").resolve()


async def _pg_reachable(dsn: str) -> bool:
    try:
        conn = await asyncio.wait_for(asyncpg.connect(dsn), 3)
    except Exception:
        return False
    await conn.close()
    return True


async def _nats_reachable(url: str) -> bool:
    async def quiet(_exc: Exception) -> None:
        pass  # the default callback logs a traceback per attempt

    # nats-py keeps retrying an unreachable server on the first connect, so bound it from outside.
    try:
        nc = await asyncio.wait_for(nats.connect(url, connect_timeout=2, allow_reconnect=False,
                                                 max_reconnect_attempts=0, error_cb=quiet), 5)
    except Exception:
        return False
    await nc.close()
    return True


class Infra:
    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.env = dict(os.environ if env is None else env)
        self.state_file = data_dir / "infra.json"

    def recorded(self) -> InfraInfo | None:
        if not self.state_file.exists():
            return None
        return msgspec.json.decode(self.state_file.read_bytes(), type=InfraInfo)

    async def up(self, shards: int = 2) -> InfraInfo:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        previous = self.recorded()
        durability = durability_of(self.env)
        admin_dsn, pg_mode = await self._postgres(previous, durability)
        try:
            nats_url, nats_pid = await self._nats(previous)
        except StartError:
            # Nothing is recorded yet, so `down` could not find a Postgres started just now.
            if pg_mode != "external":
                await asyncio.to_thread(EmbeddedPostgres(self.data_dir / "pg", mode=pg_mode).stop)
            raise
        info = InfraInfo(data_dir=str(self.data_dir), admin_dsn=admin_dsn, nats_url=nats_url,
                         pg_mode=pg_mode, nats_pid=nats_pid, pg_durability=durability)
        self.state_file.write_bytes(msgspec.json.format(msgspec.json.encode(info)))
        await ensure_databases(admin_dsn, [CLUSTER_DB, *(shard_db(i) for i in range(shards))])
        return info

    async def _postgres(self, previous: InfraInfo | None, durability: str) -> tuple[str, str]:
        external = self.env.get("NOETL_PG_DSN")
        if external:
            if not await _pg_reachable(external):
                raise StartError("postgres", "NOETL_PG_DSN is set but the server does not answer")
            return external, "external"
        if previous and previous.pg_mode != "external" and await _pg_reachable(previous.admin_dsn):
            if previous.pg_durability == durability:
                return previous.admin_dsn, previous.pg_mode
            # Running with the other durability: restarted with the one asked for.
            await asyncio.to_thread(EmbeddedPostgres(self.data_dir / "pg", mode=previous.pg_mode).stop)
        pg = EmbeddedPostgres(self.data_dir / "pg", mode=self.env.get("NOETL_DEVSTACK_PG"), durability=durability)
        dsn = await asyncio.to_thread(pg.start)
        return dsn, pg.mode

    async def _nats(self, previous: InfraInfo | None) -> tuple[str, int | None]:
        external = self.env.get("NOETL_NATS_URL")
        if external:
            if not await _nats_reachable(external):
                raise StartError("nats", "NOETL_NATS_URL is set but the server does not answer")
            return external, None
        if previous and previous.nats_pid and pid_alive(previous.nats_pid):
            return previous.nats_url, previous.nats_pid
        return await asyncio.to_thread(EmbeddedNats(self.data_dir / "nats").start)

    def down(self) -> bool:
        info = self.recorded()
        if info is None:
            return False
        # Both take a second or two to shut down cleanly; stop them side by side.
        with ThreadPoolExecutor(max_workers=2) as pool:
            stops = []
            if info.nats_pid:
                stops.append(pool.submit(stop_pid, info.nats_pid))
            if info.pg_mode != "external":
                stops.append(pool.submit(EmbeddedPostgres(self.data_dir / "pg", mode=info.pg_mode).stop))
            for stop in stops:
                stop.result()
        self.state_file.unlink(missing_ok=True)
        return True

    async def status(self) -> dict[str, object]:
        info = self.recorded()
        if info is None:
            return {"running": False}
        return {"running": True, "postgres": await _pg_reachable(info.admin_dsn), "admin_dsn": info.admin_dsn,
                "nats": info.nats_pid is None or pid_alive(info.nats_pid), "nats_url": info.nats_url,
                "pg_mode": info.pg_mode, "pg_durability": info.pg_durability}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="noetl_devstack.infra", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--shards", type=int, default=2)
    args = parser.parse_args(argv)
    infra = Infra(args.data_dir.resolve() if args.data_dir else default_data_dir())
    try:
        if args.command == "up":
            info = asyncio.run(infra.up(args.shards))
            print(f"postgres: {info.admin_dsn} ({info.pg_mode}, {info.pg_durability})")
            print(f"nats:     {info.nats_url}")
            print(f"data:     {info.data_dir}")
            # Services started by hand against this infra find the same dev secrets `make run` uses.
            secrets.load_or_create(Path(info.data_dir) / "secrets.json")
            print(f"secrets:  {Path(info.data_dir) / 'secrets.json'}")
        elif args.command == "down":
            print("stopped" if infra.down() else "nothing recorded as running")
        else:
            print(msgspec.json.encode(asyncio.run(infra.status())).decode())
    except StartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
