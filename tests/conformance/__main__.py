"""python -m tests.conformance DIR [--api URL] [--shards N] [--only id,...]

Without --api (or NOETL_API_URL) it starts a local fleet (embedded Postgres + NATS, shards,
router, publisher, projector, workers) in a temporary directory, and the local test API when a
fixture needs it (`needs: ["test_api"]`; `adc` also gives the workers Application Default
Credentials for the test API's service account), runs every fixture through the router and stops them
afterwards; fixtures that need `keychain` get the test API started first and the shards'
keychain provider endpoints pointed at it; fixtures that need `s3` get moto's S3 (tests/support/s3_standin.py,
a thread of this process) with the index's `s3_objects` in it and the workers' AWS_ENDPOINT_URL
pointed at it. With --api, NOETL_TEST_API_URL names a running test API (`make test-api`). Prints one
line per fixture and a last line `N passed, M failed`; exits non-zero on any failure.

`--workers N` sets how many of the fleet's own workers run (2 by default); `--external-worker noetl`
adds NoETL's own Python worker (`../shared/noetl-reference`, unchanged, its venv built once under
.cache/), so `--workers 0 --external-worker noetl` runs every fixture on NoETL's worker alone.
`--known-failures FILE` names fixtures that may fail, each with its reason (XFAIL; XPASS when one
passes); any other failure still fails the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import aiohttp
import msgspec

from noetl_devstack import secrets
from noetl_devstack.fleet import FleetConfig, fleet_specs, router_url, shard_specs, start_fleet
from noetl_devstack.infra import Infra
from noetl_devstack.local_fleet import discard_state
from noetl_devstack.postgres import ensure_databases
from noetl_devstack.processes import Supervisor

from tests.support import fakesnow_server
from tests.support.noetl_worker import venv as noetl_venv
from tests.support.noetl_worker.process import start_noetl_worker
from tests.support.kafka_broker import start as start_kafka
from tests.support.s3_standin import TEST_KEYS, S3StandIn
from tests.support.testapi.kube import write_kubeconfig
from tests.support.testapi.process import start as start_test_api

from .runner import Runner, ShardDb, keychain_endpoints, load_index, needs_of

SCRATCH_DB = "noetl_conformance_scratch"


def credential_for(dsn: str) -> dict:
    """The postgres credential fixtures expect (db_host..db_name) pointing at a scratch database."""
    parts = urlsplit(dsn)
    host = parts.hostname or parse_qs(parts.query).get("host", ["127.0.0.1"])[0]
    return {"db_host": host, "db_port": parts.port or 5432, "db_user": parts.username or "postgres",
            "db_password": parts.password or "unused", "db_name": parts.path.lstrip("/")}


async def write_adc_file(test_api: str, directory: Path) -> Path:
    """The test API's service account as an ADC key file (what GOOGLE_APPLICATION_CREDENTIALS names):
    its token_uri is the test API's Google token endpoint, so google-auth gets its tokens there."""
    async with aiohttp.ClientSession() as session, session.get(f"{test_api}/google/service-account") as r:
        r.raise_for_status()
        account = await r.json()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "application_default_credentials.json"
    path.write_text(json.dumps(account))
    path.chmod(0o600)
    return path


def print_outcome(r) -> None:
    print(f"{'PASS' if r.passed else 'FAIL'} {r.fixture}: {r.detail} ({r.seconds:.1f}s)", flush=True)


def load_known_failures(path: Path | None) -> dict[str, str]:
    """Fixture id -> why it is expected to fail in this run (e.g. what NoETL's worker cannot do)."""
    return dict(json.loads(path.read_text())["fixtures"]) if path else {}


def verdict(results: list, known: dict[str, str]) -> int:
    """Prints the last line; non-zero when a fixture not known to fail failed (or nothing ran).
    A known failure is XFAIL with its reason, and XPASS once it passes (then drop it from the list)."""
    for r in results:
        if r.fixture in known:
            print(f"{'XPASS' if r.passed else 'XFAIL'} {r.fixture}: {known[r.fixture]}", flush=True)
    unexpected = [r for r in results if not r.passed and r.fixture not in known]
    passed = sum(r.passed for r in results)
    xfail = sum(not r.passed and r.fixture in known for r in results)
    print(f"{passed} passed, {len(results) - passed} failed" + (f" ({xfail} known, listed above)" if known else ""))
    return 0 if results and not unexpected else 1


class LocalFleet(msgspec.Struct):
    router: str
    nats_url: str
    scratch_dsn: str
    cluster_dsn: str                # the fleet's catalog database (what NoETL's `pg_noetl_k8s` names)
    work: Path
    supervisor: Supervisor
    noetl_workers: list[str] = []   # names of NoETL's workers started (their logs: work/logs/<name>.log)
    test_api: str | None = None     # the local test API's URL, when a fixture needs it
    test_api_tls: str | None = None  # its HTTPS host (keychain fixtures with a fixed https:// URL)
    available: set[str] = set()     # what fixtures may need that this fleet provides
    kafka: str | None = None        # the local Kafka broker (host:port), when a fixture needs it
    snowflake: dict | None = None   # a snowflake credential's data for the Snowflake stand-in (fakesnow)
    s3: dict | None = None          # an AWS credential's data for the S3 stand-in (moto)
    shard_db: ShardDb | None = None  # shard 0: its URL and its own database (index `shard_db_credentials`)


def noetl_worker_python() -> Path:
    return noetl_venv.build(noetl_venv.reference_dir(), log=lambda m: print(m, file=sys.stderr, flush=True))


@contextlib.asynccontextmanager
async def local_fleet(script_root: Path, shards: int, workers: int = 2, external: int = 0,
                      trace: bool = False, env: dict[str, str] | None = None, needs: set[str] = frozenset(),
                      index: dict | None = None) -> AsyncIterator[LocalFleet]:
    """A fleet in a temporary directory with `workers` of its own and `external` NoETL workers
    (their working directory is `script_root`, which script uris are relative to), and the test
    API when `needs` asks for it (started first: the shards' keychain endpoints name it); stopped after."""
    python = noetl_worker_python() if external else None
    work = Path(tempfile.mkdtemp(prefix="noetl-conformance-"))
    infra = Infra(work)
    supervisor = Supervisor(work / "logs")
    s3: S3StandIn | None = None
    try:
        info = await infra.up(shards)
        scratch = (await ensure_databases(info.admin_dsn, [SCRATCH_DB]))[SCRATCH_DB]
        # duckdb's per-execution files and a playbook's relative paths (COPY ... TO 'x.parquet') stay
        # in the run's directory
        extra_env = {"NOETL_SCRIPT_ROOT": str(script_root), "NOETL_DATA_DIR": str(work / "data"), **(env or {})}
        available = {"postgres", "duckdb", "script-files", "nats", "shard_db"}
        test_api = test_api_tls = None
        kafka = None
        if "kafka" in needs:
            kafka = await start_kafka(supervisor)
            available.add("kafka")
        if needs & {"test_api", "keychain", "kubernetes", "pubsub", "gcs", "adc"}:
            # keychain fixtures also get the HTTPS side (a playbook with a fixed https:// URL),
            # which the fleet trusts through SSL_CERT_FILE.
            proxied = tuple((index or {}).get("proxied_hosts") or ())
            api = await start_test_api(supervisor, str(script_root),
                                       work / "tls" if "keychain" in needs or proxied else None, proxied,
                                       kube_dir=work / "kube")
            test_api, test_api_tls = api.url, api.tls_host
            available.add("test_api")
            if api.ca_file:
                extra_env["SSL_CERT_FILE"] = api.ca_file
            if api.proxy:
                # the public hosts a playbook names inside a tool reach the test API through this proxy
                extra_env.update(HTTPS_PROXY=api.proxy, NO_PROXY="127.0.0.1,localhost")
            if "pubsub" in needs:
                available.add("pubsub")  # its REST API stand-in is part of the test API (pubsub.py)
            if "kubernetes" in needs:
                # the workers' Kubernetes cluster is the test API's stand-in (kube.py), which runs Jobs locally
                extra_env["KUBECONFIG"] = str(write_kubeconfig(work / "kubeconfig", api.url))
                available.add("kubernetes")
            if "gcs" in needs:
                # the test API's GCS stand-in (gcs.py): google-cloud-storage in the python tool goes there
                extra_env["STORAGE_EMULATOR_HOST"] = test_api
                available.add("gcs")
            if "adc" in needs:
                # the http tool's `auth: {source: adc}` (and any Google client library) find this key
                extra_env["GOOGLE_APPLICATION_CREDENTIALS"] = str(await write_adc_file(api.url, work / "adc"))
                available.add("adc")
            if "keychain" in needs:
                extra_env["NOETL_KEYCHAIN_ENDPOINTS"] = json.dumps(keychain_endpoints(index or {}, test_api))
                available.add("keychain")
        snowflake = (await fakesnow_server.start(supervisor)).credential() if "snowflake" in needs else None
        if snowflake:
            available.add("snowflake")
        if "s3" in needs:
            # boto3 in the workers (script sources, a python step's own client) reads AWS_ENDPOINT_URL
            s3 = await asyncio.to_thread(S3StandIn)
            await asyncio.to_thread(s3.put_objects, {uri: (script_root / relative).read_bytes()
                                                     for uri, relative in (index or {}).get("s3_objects", {}).items()})
            extra_env["AWS_ENDPOINT_URL"] = s3.url
            available.add("s3")
        specs = fleet_specs(FleetConfig(cluster_dsn=info.cluster_dsn(), shard_dsns=info.shard_dsns(shards),
                                        nats_url=info.nats_url, secrets=secrets.load_or_create(work / "secrets.json"),
                                        workers=workers, extra_env=extra_env, worker_cwd=str(work)))
        await start_fleet(supervisor, specs)
        fleet = LocalFleet(router=router_url(specs), nats_url=info.nats_url, scratch_dsn=scratch,
                           cluster_dsn=info.cluster_dsn(), work=work,
                           supervisor=supervisor, test_api=test_api, test_api_tls=test_api_tls, available=available,
                           kafka=kafka, snowflake=snowflake, s3=dict(TEST_KEYS) if s3 else None,
                           shard_db=ShardDb(url=shard_specs(specs)[0].url,
                                            credential=credential_for(info.shard_dsns(shards)[0])))
        for i in range(external):
            assert python is not None
            name = f"noetl-worker-{i}"
            (work / name).mkdir()
            await start_noetl_worker(supervisor, python, name=name, router=fleet.router, nats_url=info.nats_url,
                                     cwd=script_root, data_dir=work / name,
                                     trace_file=work / "logs" / f"{name}.trace.jsonl" if trace else None)
            fleet.noetl_workers.append(name)
        yield fleet
    finally:
        supervisor.stop_all()
        infra.down()
        if s3:
            s3.stop()
        discard_state(work)


async def with_local_fleet(directory: Path, shards: int, only: set[str] | None, progress=None,
                           workers: int = 2, external: int = 0) -> list:
    index = load_index(directory)
    script_root = (directory / index.get("script_root", ".")).resolve()
    async with local_fleet(script_root, shards, workers, external, needs=needs_of(index, only),
                           index=index) as fleet:
        runner = Runner(fleet.router, directory, scratch_dsn=fleet.scratch_dsn,
                        pg_credential=credential_for(fleet.scratch_dsn), available=fleet.available,
                        test_api_url=fleet.test_api, test_api_tls_host=fleet.test_api_tls, progress=progress,
                        noetl_credential=credential_for(fleet.cluster_dsn), kafka=fleet.kafka,
                        nats_url=fleet.nats_url, snowflake_credential=fleet.snowflake, shard_db=fleet.shard_db,
                        s3_credential=fleet.s3)
        return await runner.run(only)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.conformance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--api", default=os.environ.get("NOETL_API_URL"))
    parser.add_argument("--shards", type=int, default=int(os.environ.get("SHARDS", "1")))
    parser.add_argument("--only", default=None, help="comma-separated fixture ids")
    parser.add_argument("--workers", type=int, default=2, help="the fleet's own workers (0: none)")
    parser.add_argument("--external-worker", choices=("noetl",), default=None,
                        help="also run NoETL's own Python worker (its venv is built once under .cache/)")
    parser.add_argument("--known-failures", type=Path, default=None,
                        help="JSON {fixtures: {id: reason}}: these may fail (XFAIL) without failing the run")
    args = parser.parse_args(argv)
    if args.workers < 0:
        parser.error("--workers must be >= 0")
    if args.workers == 0 and not args.external_worker:
        parser.error("--workers 0 needs --external-worker: nothing would run the steps")
    directory = args.directory.resolve()
    if not (directory / "index.json").exists():
        parser.error(f"{directory} has no index.json")
    only = set(args.only.split(",")) if args.only else None
    if args.api:
        scratch = os.environ.get("NOETL_CONFORMANCE_PG_DSN")
        test_api = os.environ.get("NOETL_TEST_API_URL")  # e.g. `make test-api` running elsewhere
        # keychain: the fleet at --api must already send NOETL_KEYCHAIN_ENDPOINTS to that test API.
        available = {"duckdb"} | ({"postgres"} if scratch else set()) | (
            {"script-files"} if os.environ.get("NOETL_CONFORMANCE_SCRIPTS_OK") else set()) | (
            {"keychain"} if test_api and os.environ.get("NOETL_CONFORMANCE_KEYCHAIN_OK") else set()) | (
            {"test_api"} if test_api else set())
        runner = Runner(args.api, directory, scratch_dsn=scratch, test_api_url=test_api,
                        pg_credential=credential_for(scratch) if scratch else None, available=available,
                        progress=print_outcome)
        results = asyncio.run(runner.run(only))
    else:
        results = asyncio.run(with_local_fleet(directory, args.shards, only, print_outcome, workers=args.workers,
                                               external=1 if args.external_worker else 0))
    return verdict(results, load_known_failures(args.known_failures))


if __name__ == "__main__":
    sys.exit(main())
