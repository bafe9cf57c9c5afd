"""Projector settings from the environment (errors name the variable)."""

from __future__ import annotations

from typing import Mapping

from noetl_common.config import Env
from noetl_common.service import PerShardSettings, per_shard_settings


class ProjectorSettings(PerShardSettings, frozen=True, kw_only=True):
    batch: int                  # messages per project request (each carries one transaction's events)
    linger_seconds: float       # after a fetch, how long to gather more messages for the same request
    ack_wait_seconds: float


def from_env(environ: Mapping[str, str]) -> ProjectorSettings:
    env = Env(environ)
    # Replica i of R owns shards s with s % R == i (i from the StatefulSet ordinal by default).
    return ProjectorSettings(
        **per_shard_settings(env, "NOETL_PROJECTOR", default_port=8091, default_name="projector",
                             token_guards="the project route is bearer-gated"),
        batch=env.int("NOETL_PROJECTOR_BATCH", 200, minimum=1, maximum=1000),
        linger_seconds=env.int("NOETL_PROJECTOR_LINGER_MS", 50, minimum=0, maximum=5000) / 1000,
        ack_wait_seconds=env.float("NOETL_PROJECTOR_ACK_WAIT_SECONDS", 30.0),
    )
