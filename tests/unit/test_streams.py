"""JetStream streams get an age limit (the soak found the streams keeping every message, store
and per-subject index growing with every execution)."""

import pytest
from nats.js.api import StreamConfig, StreamInfo, StreamState
from nats.js.errors import NotFoundError

from noetl_common.config import ConfigError, Env
from noetl_common.streams import (COMMANDS_STREAM, DEFAULT_MAX_AGE_SECONDS, DUPLICATE_WINDOW_SECONDS, EVENTS_STREAM,
                                  ensure_streams, max_ages)


class FakeJetStream:
    def __init__(self, existing: dict[str, StreamConfig] | None = None) -> None:
        self.streams = dict(existing or {})
        self.added: list[StreamConfig] = []
        self.updated: list[StreamConfig] = []

    async def stream_info(self, name: str) -> StreamInfo:
        if name not in self.streams:
            raise NotFoundError
        return StreamInfo(config=self.streams[name], state=StreamState(0, 0, 0, 0, 0))

    async def add_stream(self, config: StreamConfig) -> None:
        self.added.append(config)
        self.streams[config.name] = config

    async def update_stream(self, config: StreamConfig) -> None:
        self.updated.append(config)
        self.streams[config.name] = config


async def test_new_streams_are_created_with_an_age_limit():
    js = FakeJetStream()
    await ensure_streams(js)
    assert {c.name: c.max_age for c in js.added} == DEFAULT_MAX_AGE_SECONDS
    assert DEFAULT_MAX_AGE_SECONDS == {COMMANDS_STREAM: 3600.0, EVENTS_STREAM: 86400.0}
    assert all(c.duplicate_window == DUPLICATE_WINDOW_SECONDS for c in js.added)


async def test_a_stream_without_a_limit_gets_one_and_an_operators_limit_is_kept():
    js = FakeJetStream({
        COMMANDS_STREAM: StreamConfig(name=COMMANDS_STREAM, subjects=["noetl.commands.>"], max_age=0,
                                      duplicate_window=DUPLICATE_WINDOW_SECONDS),
        EVENTS_STREAM: StreamConfig(name=EVENTS_STREAM, subjects=["noetl.events.>"], max_age=7200.0,
                                    duplicate_window=DUPLICATE_WINDOW_SECONDS)})
    await ensure_streams(js)
    assert [c.name for c in js.updated] == [COMMANDS_STREAM]
    assert js.streams[COMMANDS_STREAM].max_age == 3600.0
    assert js.streams[EVENTS_STREAM].max_age == 7200.0


async def test_a_short_limit_shortens_the_duplicate_window():
    # JetStream refuses a duplicate window longer than the age limit.
    js = FakeJetStream()
    await ensure_streams(js, (EVENTS_STREAM,), {EVENTS_STREAM: 60.0})
    assert (js.added[0].max_age, js.added[0].duplicate_window) == (60.0, 60.0)


def test_limits_come_from_the_environment_and_bad_ones_are_named():
    assert max_ages(Env({})) == DEFAULT_MAX_AGE_SECONDS
    assert max_ages(Env({"NOETL_EVENTS_STREAM_MAX_AGE_SECONDS": "120"}))[EVENTS_STREAM] == 120.0
    with pytest.raises(ConfigError, match="NOETL_COMMANDS_STREAM_MAX_AGE_SECONDS"):
        max_ages(Env({"NOETL_COMMANDS_STREAM_MAX_AGE_SECONDS": "0"}))
