"""Worker settings from the environment: eager dispatch is on unless turned off."""

from __future__ import annotations

import pytest

from noetl_common.config import ConfigError
from noetl_worker.config import from_env

BASE = {"NOETL_SERVER_URL": "http://shard:8082/", "NOETL_NATS_URL": "nats://nats:4222"}


def test_eager_dispatch_defaults_on():
    settings = from_env(BASE)
    assert settings.eager_dispatch and settings.server_url == "http://shard:8082"


@pytest.mark.parametrize(("value", "expected"), [("false", False), ("0", False), ("true", True), ("on", True)])
def test_eager_dispatch_setting(value, expected):
    assert from_env({**BASE, "NOETL_WORKER_EAGER_DISPATCH": value}).eager_dispatch is expected


def test_eager_dispatch_must_be_a_boolean():
    with pytest.raises(ConfigError, match="NOETL_WORKER_EAGER_DISPATCH"):
        from_env({**BASE, "NOETL_WORKER_EAGER_DISPATCH": "sometimes"})


def test_max_ack_pending_is_noetl_workers_whatever_the_slots():
    # NoETL's Python worker recreates a shared durable whose max_ack_pending is not its own (64).
    assert from_env({**BASE, "WORKER_MAX_CONCURRENT": "32"}).max_ack_pending == 64
    assert from_env({**BASE, "NOETL_WORKER_NATS_MAX_ACK_PENDING": "256"}).max_ack_pending == 256
