"""Strict schema validation of every rendered manifest, and proof the validator can fail."""

import copy

import pytest

from noetl_deploy.metrics import names_in, referenced_metrics
from noetl_deploy.render import OVERLAYS, render_overlay
from noetl_deploy.schemas import validate_documents, validate_manifest

from .conftest import TEMPLATES

# The names the fleet exports (and Prometheus' own `up`); nothing else may be queried.
EXPORTED = {
    "up", "noetl_up",
    "noetl_http_requests_total", "noetl_http_request_duration_seconds",
    "noetl_events_ingested_total", "noetl_executions_finished_total",
    "noetl_outbox_pending", "noetl_outbox_published_total", "noetl_outbox_publish_failed_total",
    "noetl_projector_lag_events", "noetl_db_pool_connections",
    "noetl_worker_in_flight", "noetl_worker_commands_total", "noetl_worker_claims_total",
    "noetl_router_upstream_healthy", "noetl_command_claim_conflicts_total",
    "noetl_event_ingest_duration_seconds", "noetl_command_pickup_seconds", "noetl_step_duration_seconds",
    "noetl_outbox_oldest_pending_age_seconds", "noetl_shard_count", "noetl_shard_map_epochs", "noetl_shard_draining",
    "noetl_history_table_bytes", "noetl_shard_database_bytes", "noetl_history_oldest_execution_timestamp_seconds",
    "noetl_retention_last_run_timestamp_seconds", "noetl_history_slices",
    "noetl_retention_enabled",
}


@pytest.mark.parametrize("shards", [1, 3])
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_manifest_validates(values, overlay, shards):
    docs = render_overlay(values, overlay, TEMPLATES, shards=shards).documents
    assert len(docs) > 20
    assert validate_documents(docs) == []


def test_written_files_validate(rendered3):
    import yaml
    _, out = rendered3
    for overlay in OVERLAYS:
        docs = [d for f in sorted((out / overlay).glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
        assert validate_documents(docs) == [], overlay


def _doc(values, kind, name):
    return copy.deepcopy(render_overlay(values, "prod", TEMPLATES, shards=2).one(kind, name))


def test_bogus_fields_are_rejected_with_their_paths(values):
    sts = _doc(values, "StatefulSet", "api-shard")
    sts["spec"]["replicaz"] = 3
    sts["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    sts["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8082"
    problems = validate_manifest(sts)
    assert any(".spec.replicaz: unknown field" in p for p in problems)
    assert any(".spec.template.spec.containers[0].livenesProbe: unknown field" in p for p in problems)
    assert any(".spec.template.spec.containers[0].ports[0].containerPort: expected int" in p for p in problems)

    deployment = _doc(values, "Deployment", "router")
    del deployment["spec"]["selector"]
    assert any(".spec.selector" in p for p in validate_manifest(deployment))  # required field


@pytest.mark.parametrize("kind,name,mutate,expect", [
    ("ScaledObject", "outbox-publisher", lambda s: s["triggers"][0].update(authRef={}), ".spec.triggers[0].authRef"),
    ("ScaledObject", "outbox-publisher", lambda s: s["triggers"][0]["metadata"].update(valueLocaton="total"),
     "metadata.valueLocaton"),
    ("ScaledObject", "worker-shared", lambda s: s.update(maxReplicas=3), ".spec.maxReplicas"),
    ("TriggerAuthentication", "noetl-internal-bearer", lambda s: s["secretTargetRef"][0].update(secret="x"),
     ".spec.secretTargetRef[0].secret"),
    ("ServiceMonitor", "api-shard", lambda s: s["endpoints"][0].update(scrapeInterval="5s"),
     ".spec.endpoints[0].scrapeInterval"),
    ("PodMonitor", "worker", lambda s: s["podMetricsEndpoints"][0].update(interval=30), "interval: expected str"),
    ("PrometheusRule", "noetl-fleet", lambda s: s["groups"][0]["rules"][0].update(severity="x"),
     ".spec.groups[0].rules[0].severity"),
    ("PrometheusRule", "noetl-fleet", lambda s: s["groups"][0]["rules"][0].pop("expr"), "expr: required"),
])
def test_crd_validation_rejects(values, kind, name, mutate, expect):
    doc = _doc(values, kind, name)
    assert validate_manifest(doc) == []
    mutate(doc["spec"])
    problems = validate_manifest(doc)
    assert any(expect in p for p in problems), problems


def test_unknown_kind_and_bad_metadata_are_rejected():
    assert validate_manifest({"apiVersion": "v1", "kind": "Pod2", "metadata": {"name": "x"}})
    problems = validate_manifest({"apiVersion": "v1", "kind": "ConfigMap",
                                  "metadata": {"name": "x", "label": {"a": "b"}}, "data": {"k": 1}})
    assert any(".metadata.label: unknown field" in p for p in problems)
    assert any(".data.k: expected str" in p for p in problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_alerts_and_dashboard_use_only_exported_metrics(values, overlay):
    docs = render_overlay(values, overlay, TEMPLATES, shards=2).documents
    used = referenced_metrics(docs)
    assert used <= EXPORTED, used - EXPORTED
    # ... and every one of them is used somewhere (a panel or an alert).
    assert used == EXPORTED


def test_histogram_suffix_stripping_is_limited_to_histograms():
    q = 'rate(noetl_http_request_duration_seconds_bucket[5m]) + noetl_http_request_duration_seconds_count'
    assert names_in(q) == {"noetl_http_request_duration_seconds"}
    assert names_in("noetl_something_count") == {"noetl_something_count"}
    assert names_in('up{job="api-shard"} == 0') == {"up"}
    assert names_in("noetl_up") == {"noetl_up"}
