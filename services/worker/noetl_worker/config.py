"""Worker settings from the environment."""

from __future__ import annotations

import os
import secrets
import socket
from typing import Mapping

import msgspec

from noetl_common.config import ConfigError, Env, HttpSettings
from noetl_common.pools import DEFAULT_POOL
from noetl_common.streams import DEFAULT_MAX_AGE_SECONDS, max_ages


NOETL_MAX_ACK_PENDING = 64  # NOETL_WORKER_NATS_MAX_ACK_PENDING's default in NoETL's worker


class WorkerSettings(msgspec.Struct, frozen=True):
    server_url: str
    nats_url: str
    pool: str
    worker_id: str
    max_concurrent: int
    heartbeat_seconds: float
    ack_wait_seconds: float
    progress_seconds: float  # msg.in_progress() + command.heartbeat while a tool runs
    tool_timeout_seconds: float
    shutdown_grace_seconds: float
    http: HttpSettings
    log_level: str
    script_root: str
    # Ask the shard to hand over the execution's next commands with each outcome answer (an
    # extension a NoETL server ignores); off, every command comes through NATS and a claim.
    eager_dispatch: bool = True
    # Sent as a bearer token on every control-plane call: it opens decrypted credentials and a
    # router that requires NOETL_API_TOKEN.
    internal_token: str | None = None
    stream_max_age: dict[str, float] = msgspec.field(default_factory=lambda: dict(DEFAULT_MAX_AGE_SECONDS))
    # The pool's durable consumer's max_ack_pending, shared by every worker of the pool. NoETL's
    # Python worker deletes and recreates a durable whose value differs from its own (its variable,
    # its default 64), dropping what the consumer held: so both read the same variable.
    max_ack_pending: int = NOETL_MAX_ACK_PENDING

    @property
    def durable(self) -> str:
        """NoETL's workers' durable name, so this worker shares a pool's consumer with theirs."""
        return f"noetl_worker_pool_{self.pool}"


def from_env(environ: Mapping[str, str]) -> WorkerSettings:
    env = Env(environ)
    pool = env.str("WORKER_POOL_NAME", DEFAULT_POOL)
    if not pool.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"WORKER_POOL_NAME must be letters, digits, '-' or '_', got {pool!r}")
    ack_wait = env.float("NOETL_WORKER_ACK_WAIT_SECONDS", 60.0)
    if ack_wait < 3:
        raise ConfigError(f"NOETL_WORKER_ACK_WAIT_SECONDS must be at least 3, got {ack_wait}")
    # In-progress signals well inside ack_wait, so JetStream never redelivers a running command.
    progress = env.float("NOETL_WORKER_PROGRESS_SECONDS", min(10.0, ack_wait / 3))
    if not 0 < progress < ack_wait:
        raise ConfigError(f"NOETL_WORKER_PROGRESS_SECONDS must be between 0 and the ack wait ({ack_wait}s)")
    return WorkerSettings(
        server_url=env.str("NOETL_SERVER_URL").rstrip("/"),
        nats_url=env.str("NOETL_NATS_URL"),
        pool=pool,
        # A random suffix: two pods with one hostname (or a restarted pod) never share an identity.
        worker_id=env.str("WORKER_ID", f"{socket.gethostname()}-{secrets.token_hex(3)}"),
        max_concurrent=env.int("WORKER_MAX_CONCURRENT", 4, minimum=1, maximum=256),
        heartbeat_seconds=env.float("WORKER_HEARTBEAT_INTERVAL", 15.0),
        ack_wait_seconds=ack_wait,
        progress_seconds=progress,
        tool_timeout_seconds=env.float("NOETL_WORKER_TOOL_TIMEOUT_SECONDS", 600.0),
        shutdown_grace_seconds=env.float("NOETL_WORKER_SHUTDOWN_GRACE_SECONDS", 30.0),
        http=HttpSettings.from_env(env, default_port=8091),
        log_level=env.str("NOETL_LOG_LEVEL", "INFO").upper(),
        script_root=env.str("NOETL_SCRIPT_ROOT", os.getcwd()),
        eager_dispatch=env.bool("NOETL_WORKER_EAGER_DISPATCH", True),
        internal_token=env.optional("NOETL_INTERNAL_API_TOKEN"),
        stream_max_age=max_ages(env),
        max_ack_pending=env.int("NOETL_WORKER_NATS_MAX_ACK_PENDING", NOETL_MAX_ACK_PENDING, minimum=1),
    )
