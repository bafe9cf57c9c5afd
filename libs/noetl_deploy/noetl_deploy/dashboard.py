"""The Grafana dashboard "NoETL shards", built as a plain dict (Grafana JSON model, schema 39).

Built in code rather than kept as a hand-edited JSON blob so the panel list reads as a table and
every query uses the `$shard` variable the same way. The renderer writes it to
deploy/dashboards/noetl-shards.json and embeds it in a ConfigMap labelled for the Grafana sidecar.
Only metric names the fleet exports are used (checked by tests via noetl_deploy.metrics).
"""

from __future__ import annotations

from typing import Any

UID = "noetl-shards"
DS = {"type": "prometheus", "uid": "${datasource}"}
S = 'shard=~"$shard"'
# The publisher's claim call long-polls the shard (up to NOETL_OUTBOX_WAIT_MS); it is left out of
# latency figures so they show what clients wait for.
NOT_LONG_POLL = 'route!="/api/internal/outbox/claim"'


def _q(quantile: float, histogram: str, by: str = "shard") -> str:
    return (f'histogram_quantile({quantile}, sum by ({by}, le) (rate({histogram}_bucket{{{S}}}[5m])))')


# (row title, [(panel title, unit, [(expr, legend)])]); a row in REPEATED is drawn once per shard
# selected in $shard (Grafana row repeat), its panels showing that shard only.
PANELS: list[tuple[str, list[tuple[str, str, list[tuple[str, str]]]]]] = [
    ("Fleet: shard map", [
        ("Shard count and map epochs", "short", [
            ("max(noetl_shard_count)", "shard count (highest view)"),
            ("min(noetl_shard_count)", "shard count (lowest view)"),
            ("max(noetl_shard_map_epochs)", "epochs in the map"),
        ]),
        ("Draining shards", "short", [
            ("sum(noetl_shard_draining)", "draining"),
            ('max by (shard) (noetl_shard_draining{shard=~"$shard"}) > 0', "shard {{shard}} draining"),
        ]),
    ]),
    ("API shards", [
        ("Request rate per shard", "reqps", [
            (f'sum by (shard) (rate(noetl_http_requests_total{{service="api-shard",{S}}}[5m]))', "shard {{shard}}"),
        ]),
        ("Error ratio (5xx) per shard", "percentunit", [
            (f'sum by (shard) (rate(noetl_http_requests_total{{service="api-shard",{S},status=~"5.."}}[5m]))'
             f' / sum by (shard) (rate(noetl_http_requests_total{{service="api-shard",{S}}}[5m]))',
             "shard {{shard}}"),
        ]),
        ("Latency p50 / p99 per shard", "s", [
            (f'histogram_quantile(0.99, sum by (shard, le) (rate(noetl_http_request_duration_seconds_bucket'
             f'{{service="api-shard",{S},{NOT_LONG_POLL}}}[5m])))', "p99 shard {{shard}}"),
            (f'histogram_quantile(0.5, sum by (shard, le) (rate(noetl_http_request_duration_seconds_bucket'
             f'{{service="api-shard",{S},{NOT_LONG_POLL}}}[5m])))', "p50 shard {{shard}}"),
        ]),
        ("Requests by route (top 10)", "reqps", [
            (f'topk(10, sum by (route, method, status) (rate(noetl_http_requests_total{{{S}}}[5m])))',
             "{{method}} {{route}} {{status}}"),
        ]),
        ("Shard up (process / as seen by router)", "short", [
            (f'min by (shard) (noetl_up{{service="api-shard",{S}}})', "up shard {{shard}}"),
            (f'min by (shard) (noetl_router_upstream_healthy{{{S}}})', "router sees shard {{shard}} healthy"),
        ]),
        ("DB pool connections per shard", "short", [
            (f'sum by (shard, state) (noetl_db_pool_connections{{{S}}})', "shard {{shard}} {{state}}"),
        ]),
        ("History bytes per table (database total)", "bytes", [
            (f'sum by (shard, table) (noetl_history_table_bytes{{{S}}})', "shard {{shard}} {{table}}"),
            (f'max by (shard) (noetl_shard_database_bytes{{{S}}})', "shard {{shard}} database"),
        ]),
        ("History: oldest execution kept, last retention run (age)", "s", [
            (f'time() - min by (shard) (noetl_history_oldest_execution_timestamp_seconds{{{S}}} > 0)',
             "shard {{shard}} oldest execution"),
            (f'time() - max by (shard) (noetl_retention_last_run_timestamp_seconds{{{S}}} > 0)',
             "shard {{shard}} last retention run"),
        ]),
        ("History slices", "short", [
            (f'max by (shard) (noetl_history_slices{{{S}}})', "shard {{shard}} slices"),
        ]),
    ]),
    ("Executions and events", [
        ("Events ingested per shard", "ops", [
            (f'sum by (shard) (rate(noetl_events_ingested_total{{{S}}}[5m]))', "shard {{shard}}"),
        ]),
        ("Executions finished by status", "ops", [
            (f'sum by (shard, status) (rate(noetl_executions_finished_total{{{S}}}[5m]))',
             "shard {{shard}} {{status}}"),
        ]),
        ("Command claim conflicts", "ops", [
            (f'sum by (shard) (rate(noetl_command_claim_conflicts_total{{{S}}}[5m]))', "shard {{shard}}"),
        ]),
    ]),
    ("Outbox and projection", [
        ("Outbox pending per shard", "short", [
            (f'max by (shard) (noetl_outbox_pending{{{S}}})', "shard {{shard}}"),
        ]),
        ("Outbox publish rate / failures", "ops", [
            (f'sum by (shard) (rate(noetl_outbox_published_total{{{S}}}[5m]))', "published shard {{shard}}"),
            (f'sum by (shard) (rate(noetl_outbox_publish_failed_total{{{S}}}[5m]))', "failed shard {{shard}}"),
        ]),
        ("Projector lag (events)", "short", [
            (f'max by (shard) (noetl_projector_lag_events{{{S}}})', "shard {{shard}}"),
        ]),
    ]),
    ("Shard $shard", [
        ("Ingest rate", "ops", [
            (f'sum by (shard) (rate(noetl_events_ingested_total{{{S}}}[5m]))', "events/s"),
            (f'sum by (shard) (rate(noetl_event_ingest_duration_seconds_count{{{S}}}[5m]))', "ingest requests/s"),
        ]),
        ("Ingest duration p50 / p99", "s", [
            (_q(0.5, "noetl_event_ingest_duration_seconds"), "p50"),
            (_q(0.99, "noetl_event_ingest_duration_seconds"), "p99"),
        ]),
        ("Step latency: issued -> claimed -> completed (p50 / p99)", "s", [
            (_q(0.5, "noetl_command_pickup_seconds", "pool"), "claimed p50 {{pool}}"),
            (_q(0.99, "noetl_command_pickup_seconds", "pool"), "claimed p99 {{pool}}"),
            (_q(0.5, "noetl_step_duration_seconds", "pool"), "completed p50 {{pool}}"),
            (_q(0.99, "noetl_step_duration_seconds", "pool"), "completed p99 {{pool}}"),
        ]),
        ("Steps finished by outcome", "ops", [
            (f'sum by (pool, outcome) (rate(noetl_step_duration_seconds_count{{{S}}}[5m]))', "{{pool}} {{outcome}}"),
        ]),
        ("Outbox pending", "short", [
            (f'max by (shard) (noetl_outbox_pending{{{S}}})', "pending rows"),
        ]),
        ("Outbox oldest pending age", "s", [
            (f'max by (shard) (noetl_outbox_oldest_pending_age_seconds{{{S}}})', "oldest pending"),
        ]),
        ("Projection lag (events)", "short", [
            (f'max by (shard) (noetl_projector_lag_events{{{S}}})', "lag"),
        ]),
        ("DB pool use", "percentunit", [
            (f'max by (pool) (noetl_db_pool_connections{{{S},state="in_use"}})'
             f' / max by (pool) (noetl_db_pool_connections{{{S},state="max"}})', "{{pool}} in use / max"),
        ]),
        ("Claim conflicts", "ops", [
            (f'sum by (shard) (rate(noetl_command_claim_conflicts_total{{{S}}}[5m]))', "conflicts/s"),
        ]),
    ]),
    ("Workers", [
        ("Commands in flight", "short", [
            ("sum by (pod) (noetl_worker_in_flight)", "{{pod}}"),
            ("sum(noetl_worker_in_flight)", "total"),
        ]),
        ("Commands run by result", "ops", [
            # The worker labels the result `outcome`; grouping by both keeps the panel right if
            # it is ever exported as `status` instead.
            ("sum by (status, outcome) (rate(noetl_worker_commands_total[5m]))", "{{status}}{{outcome}}"),
        ]),
        ("Claim attempts", "ops", [
            ("sum by (outcome) (rate(noetl_worker_claims_total[5m]))", "{{outcome}}"),
        ]),
    ]),
]


def _panel(pid: int, title: str, unit: str, targets: list[tuple[str, str]], x: int, y: int) -> dict[str, Any]:
    return {
        "id": pid,
        "type": "timeseries",
        "title": title,
        "datasource": DS,
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
        "targets": [{"datasource": DS, "expr": expr, "legendFormat": legend, "refId": chr(ord("A") + i)}
                    for i, (expr, legend) in enumerate(targets)],
    }


REPEATED = {"Shard $shard": "shard"}


def build_dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    pid, y = 1, 0
    for row_title, row_panels in PANELS:
        row = {"id": pid, "type": "row", "title": row_title, "collapsed": False,
               "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []}
        if row_title in REPEATED:
            row["repeat"] = REPEATED[row_title]
        panels.append(row)
        pid, y = pid + 1, y + 1
        for i, (title, unit, targets) in enumerate(row_panels):
            panels.append(_panel(pid, title, unit, targets, x=(i % 2) * 12, y=y + (i // 2) * 8))
            pid += 1
        y += ((len(row_panels) + 1) // 2) * 8
    return {
        "uid": UID,
        "title": "NoETL shards",
        "description": ("Per-shard health of the NoETL fleet: shard map, API, executions, outbox, projector, "
                        "one row per shard (ingest, step latency, outbox, lag, DB pool, claims), workers."),
        "tags": ["noetl"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "timezone": "browser",
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0},
            {"name": "shard", "label": "Shard", "type": "query", "datasource": DS,
             "query": {"query": 'label_values(noetl_up{service="api-shard"}, shard)', "refId": "shard"},
             "refresh": 2, "multi": True, "includeAll": True, "allValue": ".*",
             "current": {"text": "All", "value": "$__all"}, "sort": 3, "hide": 0},
        ]},
        "annotations": {"list": []},
        "panels": panels,
    }
