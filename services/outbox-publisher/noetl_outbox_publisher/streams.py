"""The JetStream streams the fleet publishes to, created or widened idempotently."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

STREAMS = {
    "NOETL_COMMANDS": ["noetl.commands.>"],
    "NOETL_EVENTS": ["noetl.events.>"],
}
DUPLICATE_WINDOW_SECONDS = 300.0  # a re-publish after a crash within this window is dropped by JetStream


async def ensure_streams(js: JetStreamContext) -> None:
    for name, subjects in STREAMS.items():
        try:
            info = await js.stream_info(name)
        except NotFoundError:
            await js.add_stream(StreamConfig(name=name, subjects=subjects, storage=StorageType.FILE,
                                             duplicate_window=DUPLICATE_WINDOW_SECONDS))
            continue
        missing = [s for s in subjects if s not in (info.config.subjects or [])]
        if missing:
            info.config.subjects = [*(info.config.subjects or []), *missing]
            await js.update_stream(info.config)
