"""Projector settings from the environment (errors name the variable)."""

from __future__ import annotations

from typing import Mapping

import msgspec

from noetl_common.config import ConfigError, Env, HttpSettings, owned_shard_urls
from noetl_common.discovery import DiscoverySettings, discovery_from_env
from noetl_common.streams import DEFAULT_MAX_AGE_SECONDS, max_ages


class ProjectorSettings(msgspec.Struct, frozen=True):
    shard_urls: dict[int, str]  # shard index -> base URL, only the shards this replica owns
    internal_token: str
    nats_url: str
    batch: int                  # messages per project request (each carries one transaction's events)
    linger_seconds: float       # after a fetch, how long to gather more messages for the same request
    ack_wait_seconds: float
    http: HttpSettings
    name: str
    log_level: str
    discovery: DiscoverySettings | None = None  # follows the shard map for shards added later
    stream_max_age: dict[str, float] = msgspec.field(default_factory=lambda: dict(DEFAULT_MAX_AGE_SECONDS))


def from_env(environ: Mapping[str, str]) -> ProjectorSettings:
    env = Env(environ)
    # Replica i of R owns shards s with s % R == i (i from the StatefulSet ordinal by default).
    replica, shard_urls = owned_shard_urls(env, "NOETL_PROJECTOR")
    token = env.optional("NOETL_INTERNAL_API_TOKEN")
    if not token:
        raise ConfigError("NOETL_INTERNAL_API_TOKEN is required: the project route is bearer-gated")
    return ProjectorSettings(
        shard_urls=shard_urls,
        internal_token=token,
        nats_url=env.str("NOETL_NATS_URL"),
        batch=env.int("NOETL_PROJECTOR_BATCH", 200, minimum=1, maximum=1000),
        linger_seconds=env.int("NOETL_PROJECTOR_LINGER_MS", 50, minimum=0, maximum=5000) / 1000,
        ack_wait_seconds=env.float("NOETL_PROJECTOR_ACK_WAIT_SECONDS", 30.0),
        http=HttpSettings.from_env(env, default_port=8091),
        name=env.str("HOSTNAME", "projector") + f"/{replica}",
        log_level=env.str("NOETL_LOG_LEVEL", "INFO").upper(),
        discovery=discovery_from_env(env, "NOETL_PROJECTOR"),
        stream_max_age=max_ages(env),
    )
