"""A shard serves only ids it owns; anything else is a 421 naming the owner, so the router
refreshes its shard map instead of this shard answering 'not found' for data it never had."""

from __future__ import annotations

import time

from aiohttp import web

from noetl_common.errors import ApiError

from ...handlers.params import path_id
from ...state import ShardServices, services


def require_owned(svc: ShardServices, entity_id: int, field: str = "execution_id") -> None:
    owner = svc.shard_map.current.owner(entity_id)
    if owner != svc.settings.shard_index:
        raise ApiError(421, f"{field} {entity_id} belongs to shard {owner}, not shard {svc.settings.shard_index}",
                       "wrong_shard", owner_shard=owner)


def owned_path_id(request: web.Request, name: str = "execution_id") -> int:
    """The id in the path segment `name`, owned by this shard (400 if it is no id, 421 if another
    shard owns it)."""
    entity_id = path_id(request, name)
    require_owned(services(request), entity_id, name)
    return entity_id


def require_placeable(svc: ShardServices) -> None:
    """New executions start only on shards the map keeps: a draining shard (removed, or about to
    be) finishes what it holds and takes nothing new; a shard not yet added takes nothing yet."""
    shard_map, index = svc.shard_map.current, svc.settings.shard_index
    now = time.time_ns() // 1_000_000
    if shard_map.placeable(index, now):
        return
    if shard_map.draining(index, now):
        raise ApiError(503, f"shard {index} is draining: it takes no new executions (the shard map has "
                            f"{shard_map.count_at(now)} shards now); start it on another shard", "shard_draining",
                       headers={"Retry-After": "1"}, shard=index)
    raise ApiError(503, f"shard {index} is not in the shard map yet ({shard_map.count_at(now)} shards now)",
                   "shard_not_active", headers={"Retry-After": "1"}, shard=index)
