"""observability.Labelled: a metric's children made once, the counts still the registry's."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from noetl_common.observability import HttpMetrics, Labelled


def test_children_are_made_once_and_count_in_the_registry(monkeypatch):
    registry = CollectorRegistry()
    counter = Counter("t_total", "t", ["a", "b"], registry=registry)
    made = []
    real = counter.labels
    monkeypatch.setattr(counter, "labels", lambda *v: made.append(v) or real(*v))
    children = Labelled(counter)
    for _ in range(3):
        children("x", "1").inc()
        children.labels("y", "2").inc()
    assert made == [("x", "1"), ("y", "2")]
    assert registry.get_sample_value("t_total", {"a": "x", "b": "1"}) == 3
    assert registry.get_sample_value("t_total", {"a": "y", "b": "2"}) == 3


def test_http_metrics_observe_lands_by_route_and_status():
    registry = CollectorRegistry()
    metrics = HttpMetrics(registry, "svc", "0")
    for status in (200, 200, 404):
        metrics.observe("GET", "/api/x/{id}", status, 0.01)
    labels = {"service": "svc", "shard": "0", "method": "GET", "route": "/api/x/{id}"}
    assert registry.get_sample_value("noetl_http_requests_total", {**labels, "status": "200"}) == 2
    assert registry.get_sample_value("noetl_http_requests_total", {**labels, "status": "404"}) == 1
    assert registry.get_sample_value("noetl_http_request_duration_seconds_count", labels) == 3
