"""Router settings from the environment; malformed values fail start-up naming the variable."""

from __future__ import annotations

from typing import Mapping

import msgspec

from noetl_common.config import (ConfigError, Env, HttpSettings, IPNetwork, shard_url_pattern, shard_urls_from_env,
                                 trusted_networks)


class RouterSettings(msgspec.Struct, frozen=True):
    shard_urls: tuple[str, ...]          # bootstrap: index = shard number; more come from the shard map
    http: HttpSettings
    internal_token: str | None
    api_token: str | None = None  # NOETL_API_TOKEN: when set, every public route needs a bearer token
    log_level: str = "INFO"
    map_refresh_seconds: float = 2.0     # periodic shard-map refresh (a 421 or a draining shard also triggers one)
    probe_interval_seconds: float = 2.0  # /readyz probe of every shard
    failure_threshold: int = 3           # consecutive connection failures before "unhealthy"
    connect_timeout_seconds: float = 2.0
    read_timeout_seconds: float = 300.0  # per socket read; SSE heartbeats keep a stream alive
    retry_attempts: int = 3              # total tries for idempotent requests on connection failure
    retry_backoff_seconds: float = 0.05  # doubled after each failed try
    shard_url_pattern: str | None = None # URL of any shard index ({i}), for shards the map adds
    trusted_networks: tuple[IPNetwork, ...] = ()  # whose direct requests it vouches for (noetl_common.trust)
    # GET /api/pool/status asks every shard; NoETL's workers each ask every 2 s, so one answer serves
    # all askers this long (0: ask every time).
    pool_status_cache_seconds: float = 1.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "RouterSettings":
        env = Env(environ)
        return cls(
            shard_urls=shard_urls_from_env(env),
            http=HttpSettings.from_env(env, default_port=8080),
            internal_token=env.optional("NOETL_INTERNAL_API_TOKEN"),
            api_token=env.optional("NOETL_API_TOKEN"),
            log_level=env.str("NOETL_LOG_LEVEL", "INFO").upper(),
            map_refresh_seconds=_positive(env, "NOETL_ROUTER_MAP_REFRESH_SECONDS", 2.0),
            probe_interval_seconds=_positive(env, "NOETL_ROUTER_PROBE_INTERVAL_SECONDS", 2.0),
            failure_threshold=env.int("NOETL_ROUTER_FAILURE_THRESHOLD", 3, minimum=1),
            connect_timeout_seconds=_positive(env, "NOETL_ROUTER_CONNECT_TIMEOUT_SECONDS", 2.0),
            read_timeout_seconds=_positive(env, "NOETL_ROUTER_READ_TIMEOUT_SECONDS", 300.0),
            retry_attempts=env.int("NOETL_ROUTER_RETRY_ATTEMPTS", 3, minimum=1, maximum=10),
            retry_backoff_seconds=_positive(env, "NOETL_ROUTER_RETRY_BACKOFF_SECONDS", 0.05),
            shard_url_pattern=shard_url_pattern(env),
            trusted_networks=trusted_networks(env),
            pool_status_cache_seconds=_not_negative(env, "NOETL_ROUTER_POOL_STATUS_CACHE_SECONDS", 1.0),
        )


def _positive(env: Env, name: str, default: float) -> float:
    value = env.float(name, default)
    if value <= 0:
        raise ConfigError(f"{name} must be > 0, got {value}")
    return value


def _not_negative(env: Env, name: str, default: float) -> float:
    value = env.float(name, default)
    if value < 0:
        raise ConfigError(f"{name} must be >= 0, got {value}")
    return value
