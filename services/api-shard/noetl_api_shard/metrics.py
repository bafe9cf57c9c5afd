"""Domain metrics of one shard (the HTTP ones come from the shared shell). Counted in the write
path; a transaction that rolls back after counting is rare (errors only) and over-counts by one."""

from __future__ import annotations

from typing import Callable, Iterator

import asyncpg
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class ShardMetrics:
    def __init__(self, registry: CollectorRegistry, shard: str) -> None:
        self.shard = shard
        self._events = Counter("noetl_events_ingested_total", "Events appended to this shard's log",
                               ["shard"], registry=registry).labels(shard)
        self._finished = Counter("noetl_executions_finished_total", "Executions that reached a terminal status",
                                 ["shard", "status"], registry=registry)
        self._conflicts = Counter("noetl_command_claim_conflicts_total",
                                  "Claims refused because another worker holds the command",
                                  ["shard"], registry=registry).labels(shard)

    def events_ingested(self, count: int) -> None:
        self._events.inc(count)

    def execution_finished(self, status: str) -> None:
        self._finished.labels(self.shard, status).inc()

    def claim_conflict(self) -> None:
        self._conflicts.inc()

    def watch_pools(self, registry: CollectorRegistry, pools: Callable[[], dict[str, asyncpg.Pool]]) -> None:
        registry.register(_PoolCollector(self.shard, pools))


class _PoolCollector(Collector):
    """Read at scrape time: connections in use, idle and the maximum, per pool (shard, cluster)."""

    def __init__(self, shard: str, pools: Callable[[], dict[str, asyncpg.Pool]]) -> None:
        self.shard = shard
        self.pools = pools

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("noetl_db_pool_connections", "Database pool connections by state",
                                   labels=["shard", "pool", "state"])
        for name, pool in self.pools().items():
            size, idle = pool.get_size(), pool.get_idle_size()
            family.add_metric([self.shard, name, "in_use"], size - idle)
            family.add_metric([self.shard, name, "idle"], idle)
            family.add_metric([self.shard, name, "max"], pool.get_max_size())
        yield family
