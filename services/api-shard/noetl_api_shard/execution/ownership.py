"""A shard serves only ids it owns; anything else is a 421 naming the owner, so the router
refreshes its shard map instead of this shard answering 'not found' for data it never had."""

from __future__ import annotations

from noetl_common.errors import ApiError

from ..state import ShardServices


def require_owned(svc: ShardServices, entity_id: int, field: str = "execution_id") -> None:
    owner = svc.shard_map.current.owner(entity_id)
    if owner != svc.settings.shard_index:
        raise ApiError(421, f"{field} {entity_id} belongs to shard {owner}, not shard {svc.settings.shard_index}",
                       "wrong_shard", owner_shard=owner)
