"""Publisher settings from the environment (errors name the variable)."""

from __future__ import annotations

from typing import Mapping

import msgspec

from noetl_common.config import ConfigError, Env, HttpSettings, ordinal_from_hostname


class PublisherSettings(msgspec.Struct, frozen=True):
    shard_urls: dict[int, str]  # shard index -> base URL, only the shards this replica serves
    internal_token: str
    nats_url: str
    batch: int
    wait_ms: int
    lease_ms: int
    http: HttpSettings
    claimer: str
    log_level: str


def shard_urls_from_env(env: Env) -> dict[int, str]:
    listed = env.optional("NOETL_SHARD_URLS")
    if listed:
        urls = [u.strip().rstrip("/") for u in listed.split(",") if u.strip()]
        if not urls:
            raise ConfigError("NOETL_SHARD_URLS must list at least one URL")
        return dict(enumerate(urls))
    pattern = env.optional("NOETL_SHARD_URL_PATTERN")
    if not pattern:
        raise ConfigError("NOETL_SHARD_URLS (comma-separated) or NOETL_SHARD_URL_PATTERN with {i} is required")
    if "{i}" not in pattern:
        raise ConfigError("NOETL_SHARD_URL_PATTERN must contain {i}, e.g. http://api-shard-{i}.api-shard:8082")
    count = env.int("NOETL_SHARD_COUNT", minimum=1, maximum=1024)
    return {i: pattern.replace("{i}", str(i)).rstrip("/") for i in range(count)}


def from_env(environ: Mapping[str, str]) -> PublisherSettings:
    env = Env(environ)
    urls = shard_urls_from_env(env)
    # Replica r of R serves shards s with s % R == r (r from the StatefulSet ordinal by default).
    replicas = env.int("NOETL_PUBLISHER_REPLICAS", 1, minimum=1)
    ordinal = ordinal_from_hostname(env.optional("HOSTNAME")) if replicas > 1 else 0
    replica = env.int("NOETL_PUBLISHER_INDEX", ordinal or 0, minimum=0, maximum=replicas - 1)
    token = env.optional("NOETL_INTERNAL_API_TOKEN")
    if not token:
        raise ConfigError("NOETL_INTERNAL_API_TOKEN is required: the outbox routes are bearer-gated")
    return PublisherSettings(
        shard_urls={s: u for s, u in urls.items() if s % replicas == replica},
        internal_token=token,
        nats_url=env.str("NOETL_NATS_URL"),
        batch=env.int("NOETL_OUTBOX_BATCH", 200, minimum=1, maximum=1000),
        wait_ms=env.int("NOETL_OUTBOX_WAIT_MS", 5000, minimum=0, maximum=30000),
        lease_ms=env.int("NOETL_OUTBOX_LEASE_MS", 30000, minimum=100, maximum=600000),
        http=HttpSettings.from_env(env, default_port=8090),
        claimer=env.str("HOSTNAME", "outbox-publisher") + f"/{replica}",
        log_level=env.str("NOETL_LOG_LEVEL", "INFO").upper(),
    )
