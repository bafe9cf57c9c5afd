"""Worker settings from the environment."""

from __future__ import annotations

import os
import socket
from typing import Mapping

import msgspec

from noetl_common.config import ConfigError, Env, HttpSettings


class WorkerSettings(msgspec.Struct, frozen=True):
    server_url: str
    nats_url: str
    pool: str
    worker_id: str
    max_concurrent: int
    heartbeat_seconds: float
    ack_wait_seconds: float
    tool_timeout_seconds: float
    shutdown_grace_seconds: float
    http: HttpSettings
    log_level: str
    script_root: str


def from_env(environ: Mapping[str, str]) -> WorkerSettings:
    env = Env(environ)
    pool = env.str("WORKER_POOL_NAME", "default")
    if not pool.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"WORKER_POOL_NAME must be letters, digits, '-' or '_', got {pool!r}")
    return WorkerSettings(
        server_url=env.str("NOETL_SERVER_URL").rstrip("/"),
        nats_url=env.str("NOETL_NATS_URL"),
        pool=pool,
        worker_id=env.str("WORKER_ID", f"{socket.gethostname()}-{os.getpid()}"),
        max_concurrent=env.int("WORKER_MAX_CONCURRENT", 4, minimum=1, maximum=256),
        heartbeat_seconds=env.float("WORKER_HEARTBEAT_INTERVAL", 15.0),
        ack_wait_seconds=env.float("NOETL_WORKER_ACK_WAIT_SECONDS", 60.0),
        tool_timeout_seconds=env.float("NOETL_WORKER_TOOL_TIMEOUT_SECONDS", 600.0),
        shutdown_grace_seconds=env.float("NOETL_WORKER_SHUTDOWN_GRACE_SECONDS", 30.0),
        http=HttpSettings.from_env(env, default_port=8091),
        log_level=env.str("NOETL_LOG_LEVEL", "INFO").upper(),
        script_root=env.str("NOETL_SCRIPT_ROOT", os.getcwd()),
    )
