"""`python -m <service>`: the one way every process starts. Settings come from the environment
(a bad one exits 2 with one line naming the variable), logs are JSON, and a start-up failure
(database unreachable, port taken) exits 1 with one clear line instead of a traceback.

Also the start-up both per-shard services share (the outbox publisher's relays, the projector's
consumers): NATS, an HTTP session, one loop per served shard, new shards as they join."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sys
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping, TypeVar

import aiohttp
import msgspec
import nats
from aiohttp import web
from nats.js import JetStreamContext

from .background import Backoff, Loop, LoopMetrics
from .config import ConfigError, Env, HttpSettings, owned_shard_urls
from .discovery import DiscoverySettings, ShardDirectory, discover_new_shards, discovery_from_env
from .http import add_readiness_check
from .observability import configure_logging
from .streams import DEFAULT_MAX_AGE_SECONDS, ensure_streams, max_ages
from .tracing import configure_tracing

S = TypeVar("S")
EXIT_STARTUP = 1
EXIT_CONFIG = 2


def _use_uvloop() -> None:
    """uvloop where it is installed (not on Windows): the fleet's processes spend most of their
    time in socket I/O, which it does at a fraction of asyncio's default loop's cost."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


# A young collection once this many more container objects are alive than after the last one,
# instead of CPython's 700: nearly all of a request's objects die by refcount before any
# collection, so collecting less often finds the same garbage for less work.
YOUNG_COLLECTION_THRESHOLD = 10_000


async def _freeze_startup_heap(_app: web.Application) -> None:
    """What a process allocated while starting (modules, settings, pools, compiled templates,
    warm caches) lives as long as it does: frozen, a full collection no longer walks it. Measured
    on the shard and the router under ingest: full collections 24-31 ms each -> 2 ms, and every
    request in flight used to wait for them (p99 38 -> 22 ms)."""
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])


def run_service(service: str, load: Callable[[Mapping[str, str]], S], build: Callable[[S], web.Application],
                *, shard: Callable[[S], str] | None = None, describe: Callable[[S], str] | None = None) -> int:
    prog = f"noetl-{service}"
    try:
        settings: Any = load(os.environ)
        shard_label = shard(settings) if shard else ""
        configure_logging(service, settings.log_level, shard=shard_label)
        configure_tracing(service, os.environ, shard=shard_label)  # before build: the app asks if it is on
        app = build(settings)
    except ConfigError as exc:
        print(f"{prog}: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    log = logging.getLogger(f"noetl.{service}")
    _use_uvloop()
    log.info("starting%s on %s:%s", f" {describe(settings)}" if describe else "", settings.http.host,
             settings.http.port)
    app.on_startup.append(_freeze_startup_heap)  # last: after every start-up step build added
    try:
        web.run_app(app, host=settings.http.host, port=settings.http.port, print=None, access_log=None,
                    handle_signals=True)
    except Exception as exc:  # start-up failures: one clear line, the traceback stays out
        log.error("start-up failed: %s: %s", type(exc).__name__, exc)
        print(f"{prog}: start-up failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    return 0


async def _nothing() -> None:
    pass


class ShardWork(msgspec.Struct, frozen=True):
    """One served shard's loop (a relay, a consumer) and what the service does around it."""

    loop: Loop
    refresh_gauges: Callable[[], Awaitable[None]]       # gauges read from elsewhere (outbox, consumer lag)
    finish: Callable[[], Awaitable[None]] = _nothing    # after the loop stopped


StartShard = Callable[[JetStreamContext, aiohttp.ClientSession, int, str], Awaitable[ShardWork]]


class PerShardSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The settings both per-shard services read the same way (each adds its own)."""

    shard_urls: dict[int, str]  # shard index -> base URL, only the bootstrap shards this replica serves
    internal_token: str
    nats_url: str
    http: HttpSettings
    name: str                   # HOSTNAME/replica: the NATS connection's name
    log_level: str
    discovery: DiscoverySettings | None = None  # follows the shard map for shards added later
    stream_max_age: dict[str, float] = msgspec.field(default_factory=lambda: dict(DEFAULT_MAX_AGE_SECONDS))


def per_shard_settings(env: Env, prefix: str, *, default_port: int, default_name: str,
                       token_guards: str) -> dict[str, Any]:
    """PerShardSettings' fields from the environment, for the service's own Struct;
    `token_guards` says what the required internal token is for."""
    replica, shard_urls = owned_shard_urls(env, prefix)
    token = env.optional("NOETL_INTERNAL_API_TOKEN")
    if not token:
        raise ConfigError(f"NOETL_INTERNAL_API_TOKEN is required: {token_guards}")
    return msgspec.structs.asdict(PerShardSettings(
        shard_urls=shard_urls, internal_token=token, nats_url=env.str("NOETL_NATS_URL"),
        http=HttpSettings.from_env(env, default_port=default_port),
        name=env.str("HOSTNAME", default_name) + f"/{replica}", log_level=env.str("NOETL_LOG_LEVEL", "INFO").upper(),
        discovery=discovery_from_env(env, prefix), stream_max_age=max_ages(env)))


def serve_shards(app: web.Application, settings: PerShardSettings, start: StartShard, metrics: LoopMetrics,
                 log: logging.Logger, *, streams: tuple[str, ...], http_timeout_seconds: float, gauge_seconds: float,
                 stop_grace_seconds: float = 10.0) -> None:
    """Adds the cleanup_ctx that runs `start(js, session, shard, url)` for each served shard, at
    start and as shards join the fleet, plus the gauge loop (`refresh_gauges` every
    `gauge_seconds`) and discovery; at shutdown every shard's loop gets the grace to finish its
    batch, then `finish()`, then NATS is flushed and closed."""

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        nc = await nats.connect(settings.nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                                name=settings.name)
        js = nc.jetstream()
        await ensure_streams(js, streams, settings.stream_max_age)

        async def nats_ready() -> None:
            if not nc.is_connected:
                raise ConnectionError("NATS is not connected")

        add_readiness_check(app, "nats", nats_ready)
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=http_timeout_seconds))
        works: list[ShardWork] = []
        running: set[int] = set()

        async def start_shard(shard: int, url: str) -> None:
            """Idempotent: discovery calls it for every served shard, every round."""
            if shard in running:
                return
            work = await start(js, session, shard, url)
            works.append(work)
            running.add(shard)
            work.loop.start()

        async def refresh_gauges() -> None:
            for work in works:
                try:
                    await work.refresh_gauges()
                except Exception as exc:  # best effort, per shard: one that is down holds up no other
                    log.debug("%s: gauge refresh failed: %s", work.loop.name, exc)

        for shard, url in sorted(settings.shard_urls.items()):
            await start_shard(shard, url)
        helpers = [Loop("gauges", refresh_gauges, metrics=metrics, interval=gauge_seconds, logger=log)]
        if settings.discovery is not None:  # shards added to the fleet later get a loop too
            discovery = settings.discovery
            directory, every = ShardDirectory(discovery.bootstrap, discovery.pattern), discovery.interval_seconds
            helpers.append(Loop("discovery", lambda: discover_new_shards(session, discovery, directory, start_shard, log),
                                metrics=metrics, interval=every, backoff=Backoff(first=every, cap=every), logger=log))
        for helper in helpers:
            helper.start()
        log.info("serving shards %s with %s", sorted(settings.shard_urls), settings.nats_url)
        yield
        await asyncio.gather(*(helper.close() for helper in helpers))
        await asyncio.gather(*(work.loop.close(stop_grace_seconds) for work in works))
        await asyncio.gather(*(work.finish() for work in works), return_exceptions=True)
        await session.close()
        # The loops are stopped and their acks awaited: flush what is buffered, then close. (A
        # drain waits on the projector's pull subscriptions for ~20 s, past a pod's or the local
        # supervisor's stop grace, so every stop ended in SIGKILL.)
        with contextlib.suppress(Exception):
            await nc.flush(timeout=2)
        with contextlib.suppress(Exception):
            await nc.close()

    app.cleanup_ctx.append(lifecycle)
