"""The JetStream streams of the fleet, created or widened idempotently by whichever process
starts first (publisher, worker, projector), always with the same duplicate window.

Every stream has an age limit. Consumers ack within seconds and nothing reads a stream's history
(the event log in Postgres is the truth; a lost command notification is re-announced by the
shard's reaper), but without a limit a stream keeps every message for as long as the fleet runs,
and NATS keeps an index entry in memory for every subject it holds, one or two per execution
(`noetl.commands.<pool>.<execution_id>`, `noetl.events.<shard>.<execution_id>`): the soak
(`make soak`) measured about 10.7 KB of store and two subjects per execution, never released.
The defaults are those of NoETL's server: commands 1 h, events 1 day (the projector may be down
that long and still fold everything; the shards keep projection markers as long)."""

from __future__ import annotations

import contextlib
from typing import Mapping

from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from .config import ConfigError, Env

COMMANDS_STREAM = "NOETL_COMMANDS"
EVENTS_STREAM = "NOETL_EVENTS"
STREAMS = {
    COMMANDS_STREAM: ["noetl.commands.>"],
    EVENTS_STREAM: ["noetl.events.>"],
}
EVENTS_SUBJECT_PREFIX = "noetl.events."
DUPLICATE_WINDOW_SECONDS = 300.0  # a re-publish after a crash within this window is dropped by JetStream
DEFAULT_MAX_AGE_SECONDS = {COMMANDS_STREAM: 3600.0, EVENTS_STREAM: 86400.0}
MAX_AGE_VARIABLES = {COMMANDS_STREAM: "NOETL_COMMANDS_STREAM_MAX_AGE_SECONDS",
                     EVENTS_STREAM: "NOETL_EVENTS_STREAM_MAX_AGE_SECONDS"}


def events_subject(shard: int, execution_id: int) -> str:
    """Where a shard transaction's events go (named after its first event's execution)."""
    return f"{EVENTS_SUBJECT_PREFIX}{shard}.{execution_id}"


def shard_events_filter(shard: int) -> str:
    """Every events subject of one shard: the projector's consumer filter for that shard."""
    return f"{EVENTS_SUBJECT_PREFIX}{shard}.>"


def is_events_subject(subject: str) -> bool:
    return subject.startswith(EVENTS_SUBJECT_PREFIX)


def max_ages(env: Env) -> dict[str, float]:
    """Each stream's age limit in seconds, from NOETL_<STREAM>_STREAM_MAX_AGE_SECONDS or the default."""
    out = {}
    for name, variable in MAX_AGE_VARIABLES.items():
        value = env.float(variable, DEFAULT_MAX_AGE_SECONDS[name])
        if value < 1:
            raise ConfigError(f"{variable} must be >= 1 (seconds a message is kept), got {value}")
        out[name] = value
    return out


async def ensure_streams(js: JetStreamContext, names: tuple[str, ...] = tuple(STREAMS),
                         max_age_seconds: Mapping[str, float] = DEFAULT_MAX_AGE_SECONDS) -> None:
    """Create each stream, or add what an existing one lacks: subjects, and an age limit if it has
    none (created by an older fleet). A limit an operator set is left alone."""
    for name in names:
        subjects, max_age = STREAMS[name], max_age_seconds[name]
        # JetStream refuses a duplicate window longer than the age limit.
        window = min(DUPLICATE_WINDOW_SECONDS, max_age)
        try:
            info = await js.stream_info(name)
        except NotFoundError:
            with contextlib.suppress(BadRequestError):  # created meanwhile by another process
                await js.add_stream(StreamConfig(name=name, subjects=subjects, storage=StorageType.FILE,
                                                 duplicate_window=window, max_age=max_age))
            continue
        config = info.config
        missing = [s for s in subjects if s not in (config.subjects or [])]
        unlimited = not config.max_age
        if missing or unlimited:
            config.subjects = [*(config.subjects or []), *missing]
            if unlimited:
                config.max_age = max_age
                config.duplicate_window = min(config.duplicate_window or window, max_age)
            await js.update_stream(config)

# The most events one POST /api/internal/events/project may carry (the shard refuses more with a
# 400; the projector splits its batches to fit).
PROJECT_MAX_EVENTS = 5000
