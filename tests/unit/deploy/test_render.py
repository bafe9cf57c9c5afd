"""Rendering: files written, shard-count wiring, per-shard databases, KEDA triggers, dashboard."""

import json

import pytest
import yaml

from noetl_deploy.__main__ import main
from noetl_deploy.render import OVERLAYS, RenderError, overlay_values, render_overlay

from .conftest import TEMPLATES, VALUES


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def test_cli_writes_multidoc_files_for_both_overlays(tmp_path, capsys):
    out = tmp_path / "rendered"
    assert main(["--shards", "2", "--values", str(VALUES), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for overlay in OVERLAYS:
        files = sorted((out / overlay).glob("*.yaml"))
        assert files, overlay
        docs = [d for f in files for d in yaml.safe_load_all(f.read_text()) if d]
        assert any(d["kind"] == "StatefulSet" and d["metadata"]["name"] == "api-shard" for d in docs)
        assert str(out / overlay) in printed
    dashboard = json.loads((tmp_path / "dashboards" / "noetl-shards.json").read_text())
    assert dashboard["uid"] == "noetl-shards"


@pytest.mark.parametrize("shards", [1, 3, 8])
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_shard_count_wiring(values, overlay, shards):
    r = render_overlay(values, overlay, TEMPLATES, shards=shards)
    sts = r.one("StatefulSet", "api-shard")
    assert sts["spec"]["replicas"] == shards
    assert sts["spec"]["serviceName"] == "api-shard"
    assert r.one("Service", "api-shard")["spec"]["clusterIP"] == "None"
    pod = sts["spec"]["template"]["spec"]
    shard = pod["containers"][0]
    assert env_of(shard)["NOETL_SHARD_COUNT"]["valueFrom"]["configMapKeyRef"] == {
        "name": "noetl-shards", "key": "bootstrap-shard-count"}
    assert r.one("ConfigMap", "noetl-shards")["data"]["bootstrap-shard-count"] == str(shards)
    assert shard["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert shard["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert shard["resources"]["requests"]
    assert pod["affinity"]["podAntiAffinity"]
    # Ordinal -> shard index + that shard's DSN file, for every ordinal.
    script = shard["args"][0]
    assert 'NOETL_SHARD_INDEX="$ordinal"' in script and "shard-${ordinal}-dsn" in script
    # The whole Secret is mounted: a key added for a new shard needs no change to the pod template.
    assert "items" not in next(vol for vol in pod["volumes"] if vol["name"] == "db")["secret"]
    dsns = r.one("Secret", "noetl-db")["stringData"]
    pattern = {"shard-dsn-pattern"} if overlay == "dev" else set()
    assert {f"shard-{i}-dsn" for i in range(shards)} | {"cluster-dsn"} | pattern == set(dsns)
    assert r.one("PodDisruptionBudget", "api-shard")
    for name in ("router", "outbox-publisher"):
        env = env_of(r.one("Deployment", name)["spec"]["template"]["spec"]["containers"][0])
        assert env["NOETL_SHARD_COUNT"]["valueFrom"]["configMapKeyRef"]["name"] == "noetl-shards"
        assert env["NOETL_SHARD_URL_PATTERN"]["value"] == "http://api-shard-{i}.api-shard:8082"
    projector = r.one("StatefulSet", "projector")
    penv = env_of(projector["spec"]["template"]["spec"]["containers"][0])
    assert penv["NOETL_SHARD_COUNT"]["valueFrom"]["configMapKeyRef"]["name"] == "noetl-shards"
    assert penv["NOETL_PROJECTOR_REPLICAS"]["value"] == str(projector["spec"]["replicas"])


@pytest.mark.parametrize("shards", [1, 3, 8])
def test_dev_has_one_postgres_per_shard_and_dsns_point_at_it(values, shards):
    r = render_overlay(values, "dev", TEMPLATES, shards=shards)
    dsns = r.one("Secret", "noetl-db")["stringData"]
    # One StatefulSet whose pod <i> is shard i's database, so the ops CLI scales both alike.
    databases = r.one("StatefulSet", "postgres-shard")
    assert databases["spec"]["replicas"] == shards and databases["spec"]["serviceName"] == "postgres-shard"
    assert r.one("Service", "postgres-shard")["spec"]["clusterIP"] == "None"
    for i in range(shards):
        assert f"@postgres-shard-{i}.postgres-shard:5432/" in dsns[f"shard-{i}-dsn"]
    # A shard added beyond the rendered count finds its database through the pattern.
    assert dsns["shard-dsn-pattern"].replace("{i}", "9") == dsns["shard-0-dsn"].replace("-0.", "-9.")
    assert r.one("StatefulSet", "postgres-cluster")["spec"]["replicas"] == 1
    assert "@postgres-cluster:5432/" in dsns["cluster-dsn"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_changing_the_shard_count_restarts_no_pod(values, overlay):
    """A pod restarts when its template changes. Between two shard counts every pod template is
    the same; only replica counts, the bootstrap ConfigMap and the DSN Secret keys differ."""
    small, large = (render_overlay(values, overlay, TEMPLATES, shards=n) for n in (2, 5))
    workloads = ("StatefulSet", "Deployment")
    for doc in (d for d in small.documents if d["kind"] in workloads):
        other = large.one(doc["kind"], doc["metadata"]["name"])
        assert doc["spec"]["template"] == other["spec"]["template"], doc["metadata"]["name"]
    changed = {(d["kind"], d["metadata"]["name"]) for d in small.documents
               if d != large.one(d["kind"], d["metadata"]["name"])}
    scaled = {("StatefulSet", "api-shard")} | ({("StatefulSet", "postgres-shard")} if overlay == "dev" else set())
    assert changed == scaled | {("ConfigMap", "noetl-shards"), ("Secret", "noetl-db")}


def test_prod_uses_secret_placeholders_and_no_in_cluster_postgres(values):
    r = render_overlay(values, "prod", TEMPLATES, shards=3)
    assert not [d for d in r.documents if d["metadata"]["name"].startswith("postgres-")]
    assert set(r.one("Secret", "noetl-db")["stringData"].values()) == {"REPLACE_ME"}
    assert r.one("Ingress", "router")
    assert r.one("StatefulSet", "api-shard")["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_secret_value_is_a_placeholder(values, overlay):
    r = render_overlay(values, overlay, TEMPLATES, shards=2)
    for secret in r.find("Secret"):
        assert "data" not in secret
        for key, value in secret["stringData"].items():
            assert "REPLACE_ME" in value, f"{secret['metadata']['name']}/{key}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_triggers(values, overlay):
    r = render_overlay(values, overlay, TEMPLATES, shards=3)
    pub = r.one("ScaledObject", "outbox-publisher")["spec"]
    assert pub["scaleTargetRef"]["name"] == "outbox-publisher"
    assert 1 <= pub["minReplicaCount"] <= pub["maxReplicaCount"]
    (trigger,) = pub["triggers"]
    assert trigger["type"] == "metrics-api"
    md = trigger["metadata"]
    assert md["url"].startswith("http://router.") and md["url"].endswith(":8080/api/internal/outbox/pending-count")
    assert md["valueLocation"] == "pending"  # the router answers {"pending": N, "shards": {...}}
    assert md["authMode"] == "bearer"
    assert float(md["targetValue"]) > 0
    auth = r.one("TriggerAuthentication", trigger["authenticationRef"]["name"])["spec"]
    assert auth["secretTargetRef"] == [{"parameter": "token", "name": "noetl-internal", "key": "internal-api-token"}]
    assert "internal-api-token" in r.one("Secret", "noetl-internal")["stringData"]

    worker = r.one("ScaledObject", "worker-shared")["spec"]
    assert worker["scaleTargetRef"]["name"] == "worker-shared"
    (trigger,) = worker["triggers"]
    assert trigger["type"] == "nats-jetstream"
    md = trigger["metadata"]
    assert md["stream"] == "NOETL_COMMANDS"
    # The durable the worker really creates: noetl_worker_pool_<pool> (noetl_worker.config).
    assert md["consumer"] == "noetl_worker_pool_shared"
    assert md["natsServerMonitoringEndpoint"].startswith("nats.") and md["natsServerMonitoringEndpoint"].endswith(":8222")
    assert int(md["lagThreshold"]) > 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_router_hpa_nats_and_services(values, overlay):
    r = render_overlay(values, overlay, TEMPLATES, shards=2)
    hpa = r.one("HorizontalPodAutoscaler", "router")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "router"
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    nats = r.one("Service", "nats")["spec"]["ports"]
    assert {p["port"] for p in nats} >= {4222, 8222}
    assert r.one("StatefulSet", "nats")
    worker = env_of(r.one("Deployment", "worker-shared")["spec"]["template"]["spec"]["containers"][0])
    assert worker["NOETL_SERVER_URL"]["value"] == "http://router:8080"
    assert worker["WORKER_POOL_NAME"]["value"] == "shared"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prod_router_requires_an_api_token(values, overlay):
    r = render_overlay(values, overlay, TEMPLATES, shards=2)
    router = env_of(r.one("Deployment", "router")["spec"]["template"]["spec"]["containers"][0])
    if overlay == "prod":
        assert router["NOETL_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "noetl-internal", "key": "api-token"}
    else:
        assert "NOETL_API_TOKEN" not in router


def test_the_router_trusts_the_pod_network_in_dev_and_no_network_by_default(values):
    dev = render_overlay(values, "dev", TEMPLATES, shards=2)
    router = env_of(dev.one("Deployment", "router")["spec"]["template"]["spec"]["containers"][0])
    assert router["NOETL_TRUSTED_NETWORKS"]["value"] == "10.244.0.0/16"
    prod = render_overlay(values, "prod", TEMPLATES, shards=2)
    router = env_of(prod.one("Deployment", "router")["spec"]["template"]["spec"]["containers"][0])
    assert "NOETL_TRUSTED_NETWORKS" not in router  # the token only, until an operator lists networks
    # The shards never trust by address: their direct peers are the fleet's own and Prometheus.
    for shard in dev.find("StatefulSet"):
        if shard["metadata"]["name"] == "api-shard":
            assert "NOETL_TRUSTED_NETWORKS" not in env_of(shard["spec"]["template"]["spec"]["containers"][0])


def test_a_bad_trusted_network_fails_the_render(values):
    bad = {**values, "router": {**values["router"], "trusted_networks": ["10.0.0.0/33"]}}
    with pytest.raises(RenderError, match="trusted_networks.*10.0.0.0/33"):
        overlay_values(bad, "prod")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_is_scraped_and_runs_as_non_root(values, overlay):
    r = render_overlay(values, overlay, TEMPLATES, shards=2)
    monitored = {d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
                 for d in r.find("ServiceMonitor") + r.find("PodMonitor")}
    assert monitored == {"api-shard", "router", "outbox-publisher", "projector", "worker"}
    for workload in r.find("Deployment") + r.find("StatefulSet"):
        if workload["metadata"]["name"].startswith("postgres-"):
            continue  # the stock postgres image needs its own user
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policy_admits_only_fleet_clients_to_shards(values, overlay):
    r = render_overlay(values, overlay, TEMPLATES, shards=2)
    policy = r.one("NetworkPolicy", "api-shard-ingress")["spec"]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "api-shard"
    (rule,) = policy["ingress"]
    pods = {p["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for p in rule["from"] if "podSelector" in p}
    assert pods == {"router", "outbox-publisher", "projector", "worker"}
    assert rule["ports"] == [{"protocol": "TCP", "port": 8082}]


def test_dashboard_has_shard_variable(rendered3):
    results, _ = rendered3
    for rendered in results.values():
        cm = rendered.one("ConfigMap", "noetl-dashboard")
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        dashboard = json.loads(cm["data"]["noetl-shards.json"])
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["shard"]["type"] == "query"
        assert variables["shard"]["includeAll"] is True
        exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
        assert exprs and sum('$shard' in e for e in exprs) >= 10


def test_bad_inputs_fail_loudly(values, tmp_path):
    with pytest.raises(RenderError, match="shards"):
        overlay_values(values, "dev", shards=0)
    with pytest.raises(RenderError, match="overlay"):
        overlay_values(values, "staging")
    bad = tmp_path / "templates"
    bad.mkdir()
    (bad / "x.yaml.j2").write_text("kind: {{ v.no_such_key.x }}\n")
    with pytest.raises(RenderError, match="x.yaml.j2"):
        render_overlay(values, "dev", bad)


def test_committed_dashboard_json_is_what_the_renderer_builds():
    from noetl_deploy.dashboard import build_dashboard

    committed = VALUES.parent / "dashboards" / "noetl-shards.json"
    assert json.loads(committed.read_text()) == build_dashboard(), \
        "deploy/dashboards/noetl-shards.json is stale: run `make deploy-render`"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_ops_role_grants_what_noetl_ops_calls(values, overlay):
    rules = render_overlay(values, overlay, TEMPLATES, shards=2).one("Role", "noetl-ops")["rules"]
    granted = {(g, res, verb) for rule in rules for g in rule["apiGroups"] for res in rule["resources"]
               for verb in rule["verbs"]}
    # noetl_ops.kube: read/patch the StatefulSet scale, list pods, GET projector /metrics via the proxy.
    assert granted == {("apps", "statefulsets/scale", "get"), ("apps", "statefulsets/scale", "patch"),
                       ("", "pods", "list"), ("", "pods/proxy", "get")}


PROCESSES = [("StatefulSet", "api-shard"), ("Deployment", "router"), ("Deployment", "outbox-publisher"),
             ("StatefulSet", "projector")]


def _container_env(r, kind, name):
    return env_of(r.one(kind, name)["spec"]["template"]["spec"]["containers"][0])


def _processes(r, v):
    return [*PROCESSES, ("Deployment", f"worker-{v['worker']['pool']}")]


def test_tracing_is_off_unless_an_endpoint_is_set(values):
    r = render_overlay(values, "dev", TEMPLATES, shards=2)
    for kind, name in _processes(r, values):
        assert not [k for k in _container_env(r, kind, name) if k.startswith("OTEL_")], name


def test_tracing_endpoint_reaches_every_process(values):
    traced = {**values, "tracing": {"otlp_endpoint": "http://otel-collector.observability:4318",
                                    "sample_ratio": "0.25"}}
    r = render_overlay(traced, "prod", TEMPLATES, shards=2)
    for kind, name in _processes(r, traced):
        env = _container_env(r, kind, name)
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == "http://otel-collector.observability:4318", name
        assert env["OTEL_TRACES_SAMPLER"]["value"] == "parentbased_traceidratio"
        assert env["OTEL_TRACES_SAMPLER_ARG"]["value"] == "0.25"
