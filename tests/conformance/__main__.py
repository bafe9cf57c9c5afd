"""python -m tests.conformance DIR [--api URL] [--shards N] [--only id,...]

Without --api (or NOETL_API_URL) it starts a local fleet (embedded Postgres + NATS, shards,
router, publisher, projector, workers) in a temporary directory, and the local test API when a
fixture needs it (`needs: ["test_api"]`), runs every fixture through the router and stops them
afterwards; fixtures that need `keychain` get the test API started first and the shards'
keychain provider endpoints pointed at it. With --api, NOETL_TEST_API_URL names a running test API
(`make test-api`). Prints one
line per fixture and a last line `N passed, M failed`; exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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

from tests.support.testapi.process import start as start_test_api_process

from .runner import Runner, keychain_endpoints, load_index, needs_of

SCRATCH_DB = "noetl_conformance_scratch"


def credential_for(dsn: str) -> dict:
    """The postgres credential fixtures expect (db_host..db_name) pointing at a scratch database."""
    parts = urlsplit(dsn)
    host = parts.hostname or parse_qs(parts.query).get("host", ["127.0.0.1"])[0]
    return {"db_host": host, "db_port": parts.port or 5432, "db_user": parts.username or "postgres",
            "db_password": parts.password or "", "db_name": parts.path.lstrip("/")}


def print_outcome(r) -> None:
    print(f"{'PASS' if r.passed else 'FAIL'} {r.fixture}: {r.detail} ({r.seconds:.1f}s)", flush=True)


async def with_local_fleet(directory: Path, shards: int, only: set[str] | None, progress=None) -> list:
    work = Path(tempfile.mkdtemp(prefix="noetl-conformance-"))
    infra = Infra(work)
    supervisor = Supervisor(work / "logs")
    try:
        index = load_index(directory)
        info = await infra.up(shards)
        scratch = (await ensure_databases(info.admin_dsn, [SCRATCH_DB]))[SCRATCH_DB]
        script_root = (directory / index.get("script_root", ".")).resolve()
        needs = needs_of(index, only)
        available = {"postgres", "duckdb", "script-files"}
        extra_env = {"NOETL_SCRIPT_ROOT": str(script_root)}
        test_api = None
        test_api_tls = None
        if needs & {"test_api", "keychain"}:  # first: the shards' keychain endpoints name it
            # keychain fixtures also get the HTTPS side (a playbook with a fixed https:// URL),
            # which the fleet trusts through SSL_CERT_FILE.
            api = await start_test_api_process(supervisor, str(script_root),
                                               work / "tls" if "keychain" in needs else None)
            test_api, test_api_tls = api.url, api.tls_host
            available.add("test_api")
            if api.ca_file:
                extra_env["SSL_CERT_FILE"] = api.ca_file
        if "keychain" in needs and test_api:
            extra_env["NOETL_KEYCHAIN_ENDPOINTS"] = json.dumps(keychain_endpoints(index, test_api))
            available.add("keychain")
        specs = fleet_specs(FleetConfig(cluster_dsn=info.cluster_dsn(), shard_dsns=info.shard_dsns(shards),
                                        nats_url=info.nats_url, secrets=secrets.load_or_create(work / "secrets.json"),
                                        workers=2, extra_env=extra_env))
        await start_fleet(supervisor, specs)
        runner = Runner(router_url(specs), directory, scratch_dsn=scratch, pg_credential=credential_for(scratch),
                        available=available, test_api_url=test_api, test_api_tls_host=test_api_tls,
                        progress=progress)
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
        test_api = os.environ.get("NOETL_TEST_API_URL")  # e.g. `make test-api` running elsewhere
        # keychain: the fleet at --api must already send NOETL_KEYCHAIN_ENDPOINTS to that test API.
        available = {"duckdb"} | ({"postgres"} if scratch else set()) | (
            {"keychain"} if test_api and os.environ.get("NOETL_CONFORMANCE_KEYCHAIN_OK") else set()) | (
            {"script-files"} if os.environ.get("NOETL_CONFORMANCE_SCRIPTS_OK") else set()) | (
            {"test_api"} if test_api else set())
        runner = Runner(args.api, directory, scratch_dsn=scratch, test_api_url=test_api,
                        pg_credential=credential_for(scratch) if scratch else None, available=available,
                        progress=print_outcome)
        results = asyncio.run(runner.run(only))
    else:
        results = asyncio.run(with_local_fleet(directory, args.shards, only, print_outcome))
    passed = sum(r.passed for r in results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if results and passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
