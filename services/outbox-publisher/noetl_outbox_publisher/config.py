"""Publisher settings from the environment (errors name the variable)."""

from __future__ import annotations

from typing import Mapping

import msgspec

from noetl_common.config import ConfigError, Env, HttpSettings, owned_shard_urls
from noetl_common.discovery import DiscoverySettings, discovery_from_env
from noetl_common.streams import DEFAULT_MAX_AGE_SECONDS, max_ages


class PublisherSettings(msgspec.Struct, frozen=True):
    shard_urls: dict[int, str]  # shard index -> base URL, only the shards this replica serves
    internal_token: str
    nats_url: str
    batch: int
    wait_ms: int
    http: HttpSettings
    claimer: str
    log_level: str
    discovery: DiscoverySettings | None = None  # follows the shard map for shards added later
    stream_max_age: dict[str, float] = msgspec.field(default_factory=lambda: dict(DEFAULT_MAX_AGE_SECONDS))


def from_env(environ: Mapping[str, str]) -> PublisherSettings:
    env = Env(environ)
    replica, shard_urls = owned_shard_urls(env, "NOETL_PUBLISHER")
    token = env.optional("NOETL_INTERNAL_API_TOKEN")
    if not token:
        raise ConfigError("NOETL_INTERNAL_API_TOKEN is required: the outbox routes are bearer-gated")
    return PublisherSettings(
        shard_urls=shard_urls,
        internal_token=token,
        nats_url=env.str("NOETL_NATS_URL"),
        batch=env.int("NOETL_OUTBOX_BATCH", 200, minimum=1, maximum=1000),
        wait_ms=env.int("NOETL_OUTBOX_WAIT_MS", 5000, minimum=0, maximum=30000),
        http=HttpSettings.from_env(env, default_port=8090),
        claimer=env.str("HOSTNAME", "outbox-publisher") + f"/{replica}",
        log_level=env.str("NOETL_LOG_LEVEL", "INFO").upper(),
        discovery=discovery_from_env(env, "NOETL_PUBLISHER"),
        stream_max_age=max_ages(env),
    )
