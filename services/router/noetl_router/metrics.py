"""Router-specific Prometheus series, all labelled with the upstream shard."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from noetl_common.background import LoopMetrics
from noetl_common.observability import LATENCY_BUCKETS, Labelled


class RouterMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.loops = LoopMetrics(registry)  # the probe and shard-map loops
        self.requests = Counter(
            "noetl_router_upstream_requests_total", "Requests sent to a shard, by response status",
            ["shard", "method", "status"], registry=registry)
        self.latency = Histogram(
            "noetl_router_upstream_request_duration_seconds",
            "Time until a shard's response headers arrived (streams excluded)",
            ["shard", "method"], buckets=LATENCY_BUCKETS, registry=registry)
        self.errors = Counter(
            "noetl_router_upstream_errors_total",
            "Upstream failures: connect, timeout, unavailable (skipped while unhealthy), misrouted (421)",
            ["shard", "kind"], registry=registry)
        self.healthy = Gauge(
            "noetl_router_upstream_healthy", "1 while the router considers the shard healthy",
            ["shard"], registry=registry)
        self.routed = Counter(
            "noetl_router_routed_total", "Requests by routing rule and kind", ["rule", "kind"], registry=registry)
        self.relayed_events = Histogram(
            "noetl_router_relayed_events", "Single events sent on together in one request to a shard "
            "(POST /api/events while the shard is busy; see event_relay)", ["shard"],
            buckets=(1, 2, 4, 8, 16, 32, 64), registry=registry)
        self._requests, self._latency, self._routed = Labelled(self.requests), Labelled(self.latency), Labelled(self.routed)
        self._relayed = Labelled(self.relayed_events)

    def observe(self, shard: int, method: str, status: int, seconds: float) -> None:
        self._requests(str(shard), method, str(status)).inc()
        self._latency(str(shard), method).observe(seconds)

    def relayed(self, shard: int, events: int) -> None:
        self._relayed(str(shard)).observe(events)

    def route_taken(self, rule: str, kind: str) -> None:
        self._routed(rule, kind).inc()

    def error(self, shard: int, kind: str) -> None:
        self.errors.labels(str(shard), kind).inc()

    def set_health(self, shard: int, healthy: bool) -> None:
        self.healthy.labels(str(shard)).set(1 if healthy else 0)
