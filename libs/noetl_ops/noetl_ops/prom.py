"""Reading the figures the dashboards show from a process's Prometheus text (`/metrics`)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

PROJECTION_LAG = "noetl_projector_lag_events"


def lag_by_shard(text: str) -> dict[int, float]:
    """`noetl_projector_lag_events{shard="i"}` per shard. A projector replica exports only the
    shards it serves, so callers merge the answers of every replica."""
    found: dict[int, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != PROJECTION_LAG:
            continue
        for sample in family.samples:
            shard = sample.labels.get("shard", "")
            if shard.isdigit():
                found[int(shard)] = sample.value
    return found
