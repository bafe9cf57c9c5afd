"""Which metric names the rendered alerts and dashboard query.

`referenced_metrics(documents)` collects every identifier matching `noetl_[a-z0-9_]+` (plus a bare
`up`) from the `expr` of each PrometheusRule rule and from the Grafana dashboard JSON held in the
ConfigMaps labelled for Grafana (panel target `expr`s and templating queries). A Prometheus
histogram `h` is queried through the series `h_bucket`, `h_sum` and `h_count`; those suffixes are
stripped only when the base name is listed in `histograms`, so a counter that happens to end in
`_count` keeps its name. The result is compared by the tests with the names the services export.

Deliberately simple: it is a regular expression over the query text, not a PromQL parser, so a
`noetl_...` string inside a label matcher value would count too (the templates have none).
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable

METRIC = re.compile(r"\b(noetl_[a-z0-9_]+)")
UP = re.compile(r"(?<![A-Za-z0-9_:])up\s*[{\s=<>!)]")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Histograms the fleet exports (prometheus_client.Histogram).
HISTOGRAMS = frozenset({
    "noetl_http_request_duration_seconds",
    "noetl_event_ingest_duration_seconds",
    "noetl_command_pickup_seconds",
    "noetl_step_duration_seconds",
    "noetl_router_upstream_request_duration_seconds",
    "noetl_outbox_claim_seconds",
    "noetl_outbox_publish_seconds",
    "noetl_worker_tool_seconds",
})


def names_in(query: str, histograms: Iterable[str] = HISTOGRAMS) -> set[str]:
    """Metric names in one PromQL query, histogram series folded into their base name."""
    hist = set(histograms)
    found: set[str] = set()
    for name in METRIC.findall(query):
        for suffix in HISTOGRAM_SUFFIXES:
            if name.endswith(suffix) and name[: -len(suffix)] in hist:
                name = name[: -len(suffix)]
                break
        found.add(name)
    if UP.search(query + " "):
        found.add("up")
    return found


def alert_queries(documents: Iterable[dict[str, Any]]) -> list[str]:
    out = []
    for doc in documents:
        if doc.get("kind") == "PrometheusRule":
            for group in doc.get("spec", {}).get("groups", []):
                out += [str(rule["expr"]) for rule in group.get("rules", []) if "expr" in rule]
    return out


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    out = []
    panels = list(dashboard.get("panels", []))
    while panels:
        panel = panels.pop()
        panels += panel.get("panels", [])  # rows may nest panels
        out += [t["expr"] for t in panel.get("targets", []) if "expr" in t]
    for var in dashboard.get("templating", {}).get("list", []):
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if var.get("type") == "query" and isinstance(query, str):
            out.append(query)
    return out


def dashboards_in(documents: Iterable[dict[str, Any]], label: str = "grafana_dashboard") -> list[dict[str, Any]]:
    out = []
    for doc in documents:
        if doc.get("kind") == "ConfigMap" and label in (doc.get("metadata", {}).get("labels") or {}):
            out += [json.loads(text) for key, text in (doc.get("data") or {}).items() if key.endswith(".json")]
    return out


def referenced_metrics(documents: Iterable[dict[str, Any]], histograms: Iterable[str] = HISTOGRAMS) -> set[str]:
    """Every metric name the alerts and dashboards of `documents` query."""
    docs = list(documents)
    queries = alert_queries(docs)
    for dashboard in dashboards_in(docs):
        queries += dashboard_queries(dashboard)
    found: set[str] = set()
    for query in queries:
        found |= names_in(query, histograms)
    return found
