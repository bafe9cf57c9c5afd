"""python -m tests.conformance DIR [--api URL] [--shards N] [--only id,...]

Without --api (or NOETL_API_URL) it starts a local fleet (embedded Postgres + NATS, shards,
router, publisher, projector, workers) in a temporary directory, runs every fixture through the
router and stops the fleet afterwards. Prints one line per fixture and a last line
`N passed, M failed`; exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from noetl_devstack import secrets
from noetl_devstack.fleet import FleetConfig, fleet_specs, router_url, start_fleet
from noetl_devstack.infra import Infra
from noetl_devstack.postgres import ensure_databases
from noetl_devstack.processes import Supervisor

from .runner import Runner

SCRATCH_DB = "noetl_conformance_scratch"


def credential_for(dsn: str) -> dict:
    """The postgres credential fixtures expect (db_host..db_name) pointing at a scratch database."""
    parts = urlsplit(dsn)
    host = parts.hostname or parse_qs(parts.query).get("host", ["127.0.0.1"])[0]
    return {"db_host": host, "db_port": parts.port or 5432, "db_user": parts.username or "postgres",
            "db_password": parts.password or "", "db_name": parts.path.lstrip("/")}


async def with_local_fleet(directory: Path, shards: int, only: set[str] | None) -> list:
    work = Path(tempfile.mkdtemp(prefix="noetl-conformance-"))
    infra = Infra(work)
    supervisor = Supervisor(work / "logs")
    try:
        info = await infra.up(shards)
        scratch = (await ensure_databases(info.admin_dsn, [SCRATCH_DB]))[SCRATCH_DB]
        specs = fleet_specs(FleetConfig(cluster_dsn=info.cluster_dsn(), shard_dsns=info.shard_dsns(shards),
                                        nats_url=info.nats_url, secrets=secrets.load_or_create(work / "secrets.json"),
                                        workers=2, extra_env={"NOETL_SCRIPT_ROOT": str(directory)}))
        await start_fleet(supervisor, specs)
        runner = Runner(router_url(specs), directory, scratch_dsn=scratch, pg_credential=credential_for(scratch),
                        available={"postgres", "duckdb", "script-files"})
        return await runner.run(only)
    finally:
        supervisor.stop_all()
        infra.down()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.conformance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--api", default=os.environ.get("NOETL_API_URL"))
    parser.add_argument("--shards", type=int, default=int(os.environ.get("SHARDS", "1")))
    parser.add_argument("--only", default=None, help="comma-separated fixture ids")
    args = parser.parse_args(argv)
    directory = args.directory.resolve()
    if not (directory / "index.json").exists():
        parser.error(f"{directory} has no index.json")
    only = set(args.only.split(",")) if args.only else None
    if args.api:
        scratch = os.environ.get("NOETL_CONFORMANCE_PG_DSN")
        available = {"duckdb"} | ({"postgres"} if scratch else set()) | (
            {"script-files"} if os.environ.get("NOETL_CONFORMANCE_SCRIPTS_OK") else set())
        runner = Runner(args.api, directory, scratch_dsn=scratch,
                        pg_credential=credential_for(scratch) if scratch else None, available=available)
        results = asyncio.run(runner.run(only))
    else:
        results = asyncio.run(with_local_fleet(directory, args.shards, only))
    for r in results:
        print(f"{'PASS' if r.passed else 'FAIL'} {r.fixture}: {r.detail}")
    passed = sum(r.passed for r in results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if results and passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
