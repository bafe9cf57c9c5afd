"""What `make run` tells other local tools: `.data/run.json` and its control endpoint's bodies.

`make run` writes run.json once the fleet is up and removes it on exit; `python -m noetl_ops`
reads it for its defaults (router, projector) and asks the control endpoint to start or stop
shard processes, which then belong to `make run` (its Ctrl-C stops them too)."""

from __future__ import annotations

import msgspec


class RunInfo(msgspec.Struct, kw_only=True):
    pid: int                 # the `make run` process; a stale file names a dead pid
    router: str              # http://127.0.0.1:PORT
    projector: str           # its /metrics has noetl_projector_lag_events{shard}
    control: str             # http://127.0.0.1:PORT of the control endpoint (bearer: internal token)
    data_dir: str


class ShardProcess(msgspec.Struct, kw_only=True):
    index: int
    url: str
    running: bool


class ShardProcesses(msgspec.Struct, kw_only=True):
    """`GET /shards` and the answer to `PUT /shards`: the api-shard processes `make run` owns."""

    shards: list[ShardProcess]


class ShardCountRequest(msgspec.Struct, kw_only=True):
    """`PUT /shards`: run exactly api-shard-0 .. api-shard-<count-1> (like a StatefulSet's replicas)."""

    count: int
