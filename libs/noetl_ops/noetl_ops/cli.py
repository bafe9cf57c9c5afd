"""python -m noetl_ops status | scale --shards M | retention status|run | archive show | history prepare  (--k8s: Kubernetes)

Locally the defaults come from a running `make run` (.data/run.json, .data/secrets.json). In
Kubernetes pass the router URL (--api or NOETL_API_URL, e.g. through `kubectl port-forward`) and
the internal token (NOETL_INTERNAL_API_TOKEN or --token-file); the cluster side uses your
kubeconfig (or the pod's service account)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from noetl_common.db.history_prepare import DEFAULT_WINDOW_HOURS

from . import history, prepare, settings
from .errors import OpsError
from .fleet_api import FleetApi
from .local import LocalPlatform
from .platform import Platform
from .scale import ScaleOptions, Scaler
from .status import collect, render_table


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--api", help="router URL (env NOETL_API_URL; locally from .data/run.json)")
    common.add_argument("--token-file", type=Path,
                        help="file holding the internal API token (env NOETL_INTERNAL_API_TOKEN; "
                             "locally .data/secrets.json)")
    common.add_argument("--data-dir", type=Path, help="make run's data directory (env NOETL_DATA_DIR, default ./.data)")
    common.add_argument("--projector", action="append", metavar="URL",
                        help="projector base URL whose /metrics has the lag (repeatable; env NOETL_PROJECTOR_URL)")
    k8s = common.add_argument_group("Kubernetes")
    k8s.add_argument("--k8s", action="store_true", help="the fleet runs in Kubernetes (StatefulSet api-shard)")
    k8s.add_argument("--namespace", "-n", default="noetl", help="namespace of the fleet (default: %(default)s)")
    k8s.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG, ~/.kube/config, in-cluster)")
    k8s.add_argument("--context", help="kubeconfig context")
    k8s.add_argument("--projector-port", type=int, default=8092, help="projector pods' HTTP port (default: %(default)s)")
    common.add_argument("--poll", type=float, default=2.0, metavar="SECONDS", help=argparse.SUPPRESS)

    parser = argparse.ArgumentParser(prog="python -m noetl_ops", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    status = sub.add_parser("status", parents=[common], help="one row per shard: ready, epoch, load, drain state")
    status.add_argument("--json", action="store_true", help="print the rows as JSON")
    scale = sub.add_parser("scale", parents=[common], help="grow or drain the fleet to M shards, online")
    scale.add_argument("--shards", type=int, required=True, metavar="M", help="shard count wanted")
    scale.add_argument("--force", action="store_true",
                       help="scaling in: remove shards that are not drained yet (their executions stop)")
    scale.add_argument("--grace-ms", type=int, help="epoch lead time in ms (default: the fleet's)")
    scale.add_argument("--ready-timeout", type=float, default=600.0, metavar="SECONDS",
                       help="wait this long for new shards to be ready (default: %(default)s)")
    scale.add_argument("--drain-timeout", type=float, default=600.0, metavar="SECONDS",
                       help="wait this long for removed shards to drain; 0 checks once (default: %(default)s)")
    retention = sub.add_parser("retention", parents=[common], help="history retention on every shard")
    retention.add_argument("action", choices=("status", "run"),
                           help="status: slices, sizes, last run; run: remove what is past retention now")
    retention.add_argument("--json", action="store_true", help="print the shards' answers as JSON")
    archive = sub.add_parser("archive", help="read a history archive (NOETL_ARCHIVE_DIR)")
    archive.add_argument("action", choices=("show",), help="show: one execution's archived rows, by table, as JSON")
    archive.add_argument("execution_id", type=int)
    archive.add_argument("--dir", type=Path, required=True, help="the archive folder")
    prep = sub.add_parser("history", help="prepare a shard with history for migration 0007, online "
                                          "(against its database, while it serves)")
    prep.add_argument("action", choices=("prepare", "unprepare"),
                      help="prepare: build 0007's indexes CONCURRENTLY and validate the bound checks, so the "
                           "migration neither reads nor builds; unprepare: undo it (an upgrade called off)")
    prep.add_argument("--dsn-file", type=Path, action="append", metavar="FILE",
                      help="file holding one shard database's DSN (repeatable; e.g. Secret noetl-db's shard-<i>-dsn)")
    prep.add_argument("--dsn", action="append", help="a shard database's DSN (repeatable; visible in ps: "
                                                     "prefer --dsn-file or env NOETL_SHARD_DSN)")
    prep.add_argument("--hours", type=float, default=DEFAULT_WINDOW_HOURS,
                      help="how long the shard may keep serving on the old release: executions are refused "
                           "from then until 0007 runs (default: %(default)s)")
    prep.add_argument("--json", action="store_true", help="print the reports as JSON at the end")
    return parser


def say(line: str) -> None:
    print(line, flush=True)


async def _platform(args: argparse.Namespace, session: aiohttp.ClientSession, api: FleetApi,
                    run: Any, token: str, ready_timeout: float) -> Platform | None:
    explicit = settings.projectors(args.projector, settings.environ())
    if args.k8s:
        from .kube import KubernetesPlatform, api_client  # the kubernetes client loads slowly

        return KubernetesPlatform(api_client(args.kubeconfig, args.context), args.namespace, say,
                                  ready_timeout=ready_timeout, poll_seconds=args.poll,
                                  projector_port=args.projector_port, projectors=explicit, fleet=api)
    if run is not None and run.router.rstrip("/") == api.api:
        return LocalPlatform(session, run, token, api, say, explicit, ready_timeout)
    return None


async def _main(args: argparse.Namespace) -> int:
    if args.command == "archive":
        print(msgspec.json.format(msgspec.json.encode(history.show(args.dir, args.execution_id))).decode())
        return 0
    if args.command == "history":
        if args.hours <= 0:
            raise OpsError(f"--hours must be positive, got {args.hours}")
        # With --json, stdout carries the JSON alone; the progress goes to stderr.
        progress = say if not args.json else (lambda line: print(line, file=sys.stderr, flush=True))
        prepared = await prepare.run(args.action, prepare.dsns(args.dsn, args.dsn_file, settings.environ()),
                                     hours=args.hours, say=progress)
        if args.json:
            print(msgspec.json.format(msgspec.json.encode(prepared)).decode())
        return 1 if any(r.error for r in prepared) else 0
    if args.command == "scale" and args.shards < 1:
        raise OpsError(f"--shards must be at least 1, got {args.shards}")
    env = settings.environ()
    data = None if args.k8s else settings.data_dir(args.data_dir, env)
    explicit_api = bool(args.api or env.get(settings.API_ENV))
    # A stale run.json matters only when it is where the router URL would come from.
    run = settings.run_info(data, strict=not explicit_api) if data is not None else None
    url = settings.api_url(args.api, env, run, args.k8s)
    token = settings.token(args.token_file, env, data)
    timeout = aiohttp.ClientTimeout(total=15, sock_connect=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        api = FleetApi(session, url, token, direct=not args.k8s)
        ready_timeout = getattr(args, "ready_timeout", 600.0)
        platform = await _platform(args, session, api, run, token, ready_timeout)
        if args.command == "retention":
            rows = await (history.status(api) if args.action == "status" else history.run(api))
            if args.json:
                print(msgspec.json.format(msgspec.json.encode(rows)).decode())
            else:
                print(history.render_status(rows) if args.action == "status" else history.render_run(rows))
            return 1 if any(r.error for r in rows) else 0
        if args.command == "status":
            status = await collect(api, platform)
            print(msgspec.json.format(msgspec.json.encode(status)).decode() if args.json else render_table(status))
            return 0
        if platform is None:
            raise OpsError("scale needs a platform: a running `make run` (its .data/run.json, same router) "
                           "or --k8s")
        options = ScaleOptions(force=args.force, grace_ms=args.grace_ms, drain_timeout=args.drain_timeout,
                               poll_seconds=args.poll)
        return await Scaler(api, platform, say, options).run(args.shards)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_main(args))
    except OpsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to continue from where the fleet is", file=sys.stderr)
        return 130
    except Exception as exc:  # one line, never a traceback: the operator can act on a sentence
        print(f"error: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
