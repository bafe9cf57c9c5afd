"""Domain metrics of one shard (the HTTP ones come from the shared shell). Counted in the write
path; a transaction that rolls back after counting is rare (errors only) and over-counts by one."""

from __future__ import annotations

import time
from typing import Callable, Iterator

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from noetl_common.background import LoopMetrics
from noetl_common.ids import timestamp_ms
from noetl_common.observability import LATENCY_BUCKETS, Labelled
from noetl_common.sharding import ShardMap

# Steps wait for a worker and run for seconds to minutes: the request buckets stop too early.
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)


class ShardMetrics:
    def __init__(self, registry: CollectorRegistry, shard: str) -> None:
        self.shard = shard
        self.loops = LoopMetrics(registry)  # the reaper's and the shard map keeper's
        self._events = Counter("noetl_events_ingested_total", "Events appended to this shard's log",
                               ["shard"], registry=registry).labels(shard)
        self._finished = Counter("noetl_executions_finished_total", "Executions that reached a terminal status",
                                 ["shard", "status"], registry=registry)
        self._conflicts = Counter("noetl_command_claim_conflicts_total",
                                  "Claims refused because another worker holds the command",
                                  ["shard"], registry=registry).labels(shard)
        early = Counter("noetl_command_claim_early_total",
                        "Claims that arrived while their command's transaction was still committing (it is "
                        "announced during the commit) and waited for it, by how it ended: committed, failed "
                        "(the claim is a 404), timed_out (the database answered)", ["shard", "outcome"],
                        registry=registry)
        self._early = {o: early.labels(shard, o) for o in ("committed", "failed", "timed_out")}
        self.ingest = Histogram("noetl_event_ingest_duration_seconds",
                                "Worker event ingest (POST /api/events, /api/events/batch): parse, engine, write",
                                ["shard"], buckets=LATENCY_BUCKETS, registry=registry).labels(shard)
        # Both measured from the command id's own timestamp (the id is minted when the command is
        # issued), so neither needs a column or a read.
        self._pickup = Histogram("noetl_command_pickup_seconds",
                                 "Command issued -> claimed; via: notification (NATS + claim) or eager (handed over "
                                 "in an outcome answer, claimed in the issuing transaction)",
                                 ["shard", "pool", "via"], buckets=STEP_BUCKETS, registry=registry)
        self._step = Histogram("noetl_step_duration_seconds",
                               "Command issued -> its outcome ingested (pickup + run + report), by outcome",
                               ["shard", "pool", "outcome"], buckets=STEP_BUCKETS, registry=registry)
        self._pickups, self._steps = Labelled(self._pickup), Labelled(self._step)

        lookups = Counter("noetl_cluster_cache_lookups_total",
                          "Cluster-database rows (catalog by path, credentials) asked of the shard's cache, by "
                          "outcome: hit, or miss (read from the cluster database)", ["shard", "outcome"],
                          registry=registry)
        self.cluster_cache_hits, self.cluster_cache_misses = lookups.labels(shard, "hit"), lookups.labels(shard, "miss")

        self.history = HistoryGauges(registry, shard)

    def events_ingested(self, count: int) -> None:
        self._events.inc(count)

    def execution_finished(self, status: str) -> None:
        self._finished.labels(self.shard, status).inc()

    def claim_conflict(self) -> None:
        self._conflicts.inc()

    def claim_waited(self, outcome: str) -> None:
        """A claim that waited for its command's transaction (ClaimBook.settled), by how it ended."""
        self._early[outcome].inc()

    def command_picked_up(self, command_id: int, pool: str, via: str) -> None:
        self._pickups(self.shard, pool, via).observe(_since(command_id))

    def step_finished(self, command_id: int, pool: str, ok: bool) -> None:
        self._steps(self.shard, pool, "ok" if ok else "failed").observe(_since(command_id))

    def watch_shard_map(self, registry: CollectorRegistry, index: int, current: Callable[[], ShardMap]) -> None:
        registry.register(_ShardMapCollector(self.shard, index, current))

    def watch_pools(self, registry: CollectorRegistry, pools: Callable[[], dict[str, asyncpg.Pool]]) -> None:
        registry.register(_PoolCollector(self.shard, pools))


class _PoolCollector(Collector):
    """Read at scrape time: connections in use, idle and the maximum, per pool (shard, shard_write, cluster)."""

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


def _since(snowflake_id: int) -> float:
    return max(0.0, (time.time_ns() // 1_000_000 - timestamp_ms(snowflake_id)) / 1000)


class _ShardMapCollector(Collector):
    """Read at scrape time from the map this shard has loaded: how many epochs, the shard count in
    force now, and whether this shard is draining (it owns no new ids under the current count,
    but still serves the executions it owns)."""

    def __init__(self, shard: str, index: int, current: Callable[[], ShardMap]) -> None:
        self.shard = shard
        self.index = index
        self.current = current

    def collect(self) -> Iterator[GaugeMetricFamily]:
        shard_map = self.current()
        now = time.time_ns() // 1_000_000
        for name, doc, value in (
                ("noetl_shard_map_epochs", "Epochs in the shard map this shard has loaded", len(shard_map.epochs)),
                ("noetl_shard_count", "Shard count in force now, by this shard's map", shard_map.count_at(now)),
                ("noetl_shard_draining", "1 while this shard takes no new executions but was a member (removed, "
                                         "or a committed epoch is about to remove it)",
                 int(shard_map.draining(self.index, now)))):
            family = GaugeMetricFamily(name, doc, labels=["shard"])
            family.add_metric([self.shard], value)
            yield family


class HistoryGauges:
    """The shard's history, set by the history-status loop (execution/upkeep/retention.py): bytes per
    table, slices, database size, the oldest execution kept, rows with no slice, last retention run."""

    def __init__(self, registry: CollectorRegistry, shard: str) -> None:
        self.shard = shard
        self._table_bytes = Gauge("noetl_history_table_bytes", "Bytes of a per-execution table (all its slices, "
                                  "indexes and TOAST)", ["shard", "table"], registry=registry)
        self._slices = Gauge("noetl_history_slices", "Partition slices of the per-execution tables", ["shard"],
                             registry=registry).labels(shard)
        self._db_bytes = Gauge("noetl_shard_database_bytes", "Size of the shard database", ["shard"],
                               registry=registry).labels(shard)
        self._oldest = Gauge("noetl_history_oldest_execution_timestamp_seconds",
                             "Start time of the oldest execution kept (0: none)", ["shard"],
                             registry=registry).labels(shard)
        self._last_run = Gauge("noetl_retention_last_run_timestamp_seconds",
                               "When retention last finished a run (0: never)", ["shard"],
                               registry=registry).labels(shard)
        self._enabled = Gauge("noetl_retention_enabled", "1 when NOETL_RETENTION_DAYS is set", ["shard"],
                              registry=registry).labels(shard)

    def update(self, *, table_bytes: dict[str, int], slices: int, database_bytes: int, oldest_execution_id: int | None,
               last_run_at: float | None, enabled: bool) -> None:
        for table, size in table_bytes.items():
            self._table_bytes.labels(self.shard, table).set(size)
        self._slices.set(slices)
        self._db_bytes.set(database_bytes)
        self._oldest.set(timestamp_ms(oldest_execution_id) / 1000 if oldest_execution_id is not None else 0)
        self._last_run.set(last_run_at or 0)
        self._enabled.set(int(enabled))
