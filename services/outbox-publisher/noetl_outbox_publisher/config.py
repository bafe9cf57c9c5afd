"""Publisher settings from the environment (errors name the variable)."""

from __future__ import annotations

from typing import Mapping

from noetl_common.config import Env
from noetl_common.service import PerShardSettings, per_shard_settings


class PublisherSettings(PerShardSettings, frozen=True, kw_only=True):
    batch: int
    wait_ms: int


def from_env(environ: Mapping[str, str]) -> PublisherSettings:
    env = Env(environ)
    return PublisherSettings(
        **per_shard_settings(env, "NOETL_PUBLISHER", default_port=8090, default_name="outbox-publisher",
                             token_guards="the outbox routes are bearer-gated"),
        batch=env.int("NOETL_OUTBOX_BATCH", 200, minimum=1, maximum=1000),
        wait_ms=env.int("NOETL_OUTBOX_WAIT_MS", 5000, minimum=0, maximum=30000),
    )
