"""`make run` over a data directory whose stored shard map has another shard count than asked for.

The shard map lives in the cluster database and decides which shard owns each id, so the process
count alone changes nothing. More shards asked for: the new count is committed as an epoch, as
`make scale` does (new executions spread over all shards from its effective time). Fewer: the
stored count of shards is started anyway, since every execution the extra shards hold would
otherwise be unreachable; `make scale SHARDS=n` drains them. Either way the user is told."""

from __future__ import annotations

import time
from typing import Callable

import aiohttp
import msgspec

from noetl_common.discovery import fetch_fleet_view
from noetl_common.wire.shard import EpochRequest, EpochResponse

from .shards import LocalShards

EPOCHS = "/api/internal/shard-map/epochs"


async def reconcile(session: aiohttp.ClientSession, shard_url: str, token: str, requested: int,
                    shards: LocalShards, say: Callable[[str], None]) -> int:
    """Make the running fleet match the stored map (or the map match the request); returns the
    number of shards now running."""
    view = await fetch_fleet_view(session, [shard_url])
    stored = view.shard_map.newest().shard_count
    if stored > requested:
        for index in range(requested, stored):
            await shards.start(index)
        names = ", ".join(f"api-shard-{i}" for i in range(requested, stored))
        say(f"the stored shard map has {stored} shards, so {names} started too (the executions they own stay "
            f"reachable); `make scale SHARDS={requested}` drains them")
        return stored
    if stored < requested:
        async with session.post(shard_url + EPOCHS, data=msgspec.json.encode(EpochRequest(shard_count=requested)),
                                headers={"Authorization": f"Bearer {token}",
                                         "Content-Type": "application/json"}) as resp:
            raw = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"committing the {requested}-shard epoch answered {resp.status}: {raw[:300]!r}")
        answer = msgspec.json.decode(raw, type=EpochResponse)
        wait = max(0.0, answer.effective_from_ms / 1000 - time.time())
        say(f"the stored shard map had {stored} shard(s): committed a {requested}-shard epoch, as "
            f"`make scale` does; new executions spread over {requested} shards in {wait:.0f} s")
    return requested
