"""Every alert the PrometheusRule defines has a runbook section in deploy/README.md."""

import re

import pytest

from noetl_deploy.render import OVERLAYS, render_overlay

from .conftest import README, TEMPLATES

EXPECTED_ALERTS = {"ShardDown", "ShardNotReady", "OutboxBacklogGrowing", "OutboxPublishFailures",
                   "ProjectionLag", "ClaimConflictsSpike", "ExecutionsFailing", "P99LatencyHigh",
                   "OutboxStale", "CommandPickupSlow", "DbPoolSaturated", "ShardMapDisagreement",
                   "ShardDatabaseLarge", "RetentionStalled"}


def alerts(values, overlay):
    (rule,) = render_overlay(values, overlay, TEMPLATES, shards=2).find("PrometheusRule")
    return {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_expected_alerts_exist_with_their_metrics(values, overlay):
    rules = alerts(values, overlay)
    assert set(rules) == EXPECTED_ALERTS
    for name, metric in [("ShardDown", "up{"), ("ShardNotReady", "noetl_router_upstream_healthy"),
                         ("OutboxBacklogGrowing", "noetl_outbox_pending"),
                         ("OutboxPublishFailures", "noetl_outbox_publish_failed_total"),
                         ("ProjectionLag", "noetl_projector_lag_events"),
                         ("ClaimConflictsSpike", "noetl_command_claim_conflicts_total"),
                         ("ExecutionsFailing", 'noetl_executions_finished_total{status="FAILED"}'),
                         ("P99LatencyHigh", "noetl_http_request_duration_seconds_bucket"),
                         ("OutboxStale", "noetl_outbox_oldest_pending_age_seconds"),
                         ("CommandPickupSlow", "noetl_command_pickup_seconds_bucket"),
                         ("DbPoolSaturated", 'noetl_db_pool_connections{state="in_use"}'),
                         ("ShardMapDisagreement", "noetl_shard_count"),
                         ("ShardDatabaseLarge", "noetl_shard_database_bytes"),
                         ("RetentionStalled", "noetl_retention_last_run_timestamp_seconds")]:
        assert metric in rules[name]["expr"], name
    for rule in rules.values():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["runbook_url"]


def test_every_alert_has_a_runbook_section(values):
    text = README.read_text()
    headings = {m.group(1).strip() for m in re.finditer(r"^#{2,4}\s+`?([A-Za-z0-9]+)`?\s*$", text, re.M)}
    for overlay in OVERLAYS:
        for name, rule in alerts(values, overlay).items():
            assert name in headings, f"deploy/README.md has no runbook heading for {name}"
            assert rule["annotations"]["runbook_url"].endswith("#" + name.lower())
            body = re.split(rf"^#+\s+`?{name}`?\s*$", text, maxsplit=1, flags=re.M)[1]
            section = re.split(r"^#", body, maxsplit=1, flags=re.M)[0]
            for part in ("Meaning", "Check", "Fix"):
                assert f"**{part}" in section, f"{name} runbook lacks {part}"
