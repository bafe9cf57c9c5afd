"""The JetStream streams of the fleet, created or widened idempotently by whichever process
starts first (publisher, worker, projector), always with the same duplicate window."""

from __future__ import annotations

import contextlib

from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

COMMANDS_STREAM = "NOETL_COMMANDS"
EVENTS_STREAM = "NOETL_EVENTS"
STREAMS = {
    COMMANDS_STREAM: ["noetl.commands.>"],
    EVENTS_STREAM: ["noetl.events.>"],
}
DUPLICATE_WINDOW_SECONDS = 300.0  # a re-publish after a crash within this window is dropped by JetStream


async def ensure_streams(js: JetStreamContext, names: tuple[str, ...] = tuple(STREAMS)) -> None:
    for name in names:
        subjects = STREAMS[name]
        try:
            info = await js.stream_info(name)
        except NotFoundError:
            with contextlib.suppress(BadRequestError):  # created meanwhile by another process
                await js.add_stream(StreamConfig(name=name, subjects=subjects, storage=StorageType.FILE,
                                                 duplicate_window=DUPLICATE_WINDOW_SECONDS))
            continue
        missing = [s for s in subjects if s not in (info.config.subjects or [])]
        if missing:
            info.config.subjects = [*(info.config.subjects or []), *missing]
            await js.update_stream(info.config)

# The most events one POST /api/internal/events/project may carry (the shard refuses more with a
# 400; the projector splits its batches to fit).
PROJECT_MAX_EVENTS = 5000
