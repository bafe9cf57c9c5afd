"""Where shard processes run: the StatefulSet in Kubernetes, or `make run` locally. The scaling
steps (scale.py) are the same for both; only starting, stopping and watching shards differ."""

from __future__ import annotations

from typing import Callable, Protocol

Say = Callable[[str], None]   # progress lines for the operator


class Platform(Protocol):
    name: str

    async def replicas(self) -> int:
        """How many shard slots exist (shards 0 .. n-1), started or not."""
        ...

    async def grow(self, count: int) -> None:
        """Have shards 0 .. count-1 running and ready (their databases first); never removes any."""
        ...

    async def shrink(self, count: int) -> None:
        """Remove shards count .. (their databases are kept), and wait until they are gone."""
        ...

    async def readiness(self) -> dict[int, bool]:
        """Ready or not, per shard that exists."""
        ...

    async def shard_urls(self) -> dict[int, str]:
        """Shard base URLs this machine can reach directly (local processes); empty in Kubernetes."""
        ...

    async def projector_lag(self) -> dict[int, float] | None:
        """`noetl_projector_lag_events` per shard, None when no projector could be scraped."""
        ...
