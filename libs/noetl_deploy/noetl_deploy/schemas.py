"""Strict structural validation of rendered manifests, without a cluster.

Built-in kinds are walked against the typed models of the `kubernetes` Python client: each model
class lists its fields in `openapi_types` (python name -> type string such as `str`,
`List[V1Container]`, `Dict[str, str]`, `V1ObjectMeta`, `object`) and `attribute_map` (python
name -> JSON key). Every key of the manifest must be a JSON key of the model at that position;
values must have the declared primitive type (`object` = anything, e.g. IntOrString). When the
client's models are pydantic models (kubernetes >= 35), `model_validate` additionally checks
required fields; its complaints are reported with the same path format.

CRDs (KEDA, prometheus-operator) are checked against hand-written field lists transcribed from
their published CRD references (keda.sh/docs "ScaledObject specification" / "Authentication";
prometheus-operator "API reference" for ServiceMonitor, PodMonitor, PrometheusRule), recursive
where this fleet uses them. A field the CRD knows but this list does not would be reported as
unknown: the lists err on the strict side, extend them when a template starts using a new field.

Every problem is reported as "<Kind>/<name>: <path>: <message>", all of them, not just the first.
"""

from __future__ import annotations

import re
from typing import Any

from kubernetes.client import models as k8s

# ---------------------------------------------------------------- built-in kinds

BUILTIN: dict[tuple[str, str], type] = {
    ("apps/v1", "StatefulSet"): k8s.V1StatefulSet,
    ("apps/v1", "Deployment"): k8s.V1Deployment,
    ("v1", "Service"): k8s.V1Service,
    ("policy/v1", "PodDisruptionBudget"): k8s.V1PodDisruptionBudget,
    ("autoscaling/v2", "HorizontalPodAutoscaler"): k8s.V2HorizontalPodAutoscaler,
    ("networking.k8s.io/v1", "NetworkPolicy"): k8s.V1NetworkPolicy,
    ("networking.k8s.io/v1", "Ingress"): k8s.V1Ingress,
    ("v1", "Secret"): k8s.V1Secret,
    ("v1", "ConfigMap"): k8s.V1ConfigMap,
    ("v1", "ServiceAccount"): k8s.V1ServiceAccount,
    ("v1", "Namespace"): k8s.V1Namespace,
    ("rbac.authorization.k8s.io/v1", "Role"): k8s.V1Role,
}

_LIST = re.compile(r"^(?:List|list)\[(.+)\]$")
_DICT = re.compile(r"^(?:Dict\[|dict\()\s*str\s*,\s*(.+?)[\])]$")


def _type_ok(value: Any, type_name: str) -> bool:
    if type_name == "str":
        return isinstance(value, str)
    if type_name == "bool":
        return isinstance(value, bool)
    if type_name == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return True  # object (IntOrString, free-form), datetime, bytes: not checked further


def walk_model(value: Any, type_name: str, path: str, problems: list[str]) -> None:
    """Check `value` against the client type `type_name`, appending "path: message" problems."""
    if value is None:
        return
    if m := _LIST.match(type_name):
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        for i, item in enumerate(value):
            walk_model(item, m.group(1), f"{path}[{i}]", problems)
        return
    if m := _DICT.match(type_name):
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a mapping, got {type(value).__name__}")
            return
        for key, item in value.items():
            walk_model(item, m.group(1), f"{path}.{key}", problems)
        return
    model = getattr(k8s, type_name, None)
    if model is None:
        if not _type_ok(value, type_name):
            problems.append(f"{path}: expected {type_name}, got {type(value).__name__} {value!r}")
        return
    if not isinstance(value, dict):
        problems.append(f"{path}: expected a {type_name} mapping, got {type(value).__name__}")
        return
    by_json = {json_key: attr for attr, json_key in model.attribute_map.items()}
    for key, item in value.items():
        attr = by_json.get(key)
        if attr is None:
            problems.append(f"{path}.{key}: unknown field (not in {type_name})")
            continue
        walk_model(item, model.openapi_types[attr], f"{path}.{key}", problems)


def _pydantic_problems(model: type, doc: dict[str, Any]) -> list[str]:
    validate = getattr(model, "model_validate", None)
    if validate is None:
        return []
    try:
        from pydantic import ValidationError
    except ImportError:  # pragma: no cover - pydantic ships with pydantic-based clients
        return []
    try:
        validate(doc)
    except ValidationError as exc:
        out = []
        for err in exc.errors():
            if err.get("type") == "extra_forbidden":
                continue  # already reported by the walk, with the model name
            loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.get("loc", ()))
            out.append(f"{loc or '.'}: {err.get('msg')}")
        return out
    return []


# ---------------------------------------------------------------- CRDs
# A schema is: a type (str, int, bool, float), ANY, a dict of field -> schema (an object with
# exactly these optional fields), [schema] (a list of it), or MapOf(schema) (free keys).

ANY = object()


class MapOf:
    def __init__(self, item: Any):
        self.item = item


NUM = (int, float)
STR_MAP = MapOf(str)
LABEL_SELECTOR = {"matchLabels": STR_MAP,
                  "matchExpressions": [{"key": str, "operator": str, "values": [str]}]}
NAMESPACE_SELECTOR = {"any": bool, "matchNames": [str]}
SECRET_KEY = {"name": str, "key": str, "optional": bool}
SAFE_AUTH = {"type": str, "credentials": SECRET_KEY}
RELABEL = {"sourceLabels": [str], "separator": str, "targetLabel": str, "regex": str,
           "modulus": int, "replacement": str, "action": str}
TLS = {"ca": ANY, "cert": ANY, "keySecret": SECRET_KEY, "serverName": str, "insecureSkipVerify": bool,
       "caFile": str, "certFile": str, "keyFile": str, "minVersion": str, "maxVersion": str}
# Fields shared by ServiceMonitor endpoints and PodMonitor podMetricsEndpoints.
_SCRAPE_ENDPOINT = {
    "port": str, "targetPort": ANY, "path": str, "scheme": str, "params": MapOf([str]),
    "interval": str, "scrapeTimeout": str, "honorLabels": bool, "honorTimestamps": bool,
    "trackTimestampsStaleness": bool, "tlsConfig": TLS, "bearerTokenSecret": SECRET_KEY,
    "authorization": SAFE_AUTH, "basicAuth": {"username": SECRET_KEY, "password": SECRET_KEY},
    "oauth2": ANY, "metricRelabelings": [RELABEL], "relabelings": [RELABEL], "proxyUrl": str,
    "followRedirects": bool, "enableHttp2": bool, "filterRunning": bool,
}
_MONITOR_COMMON = {
    "jobLabel": str, "podTargetLabels": [str], "selector": LABEL_SELECTOR,
    "namespaceSelector": NAMESPACE_SELECTOR, "sampleLimit": int, "targetLimit": int,
    "labelLimit": int, "labelNameLengthLimit": int, "labelValueLengthLimit": int,
    "keepDroppedTargets": int, "attachMetadata": {"node": bool}, "scrapeProtocols": [str],
    "scrapeClass": str, "fallbackScrapeProtocol": str,
}

SERVICE_MONITOR_SPEC = {**_MONITOR_COMMON, "targetLabels": [str],
                        "endpoints": [{**_SCRAPE_ENDPOINT, "bearerTokenFile": str}]}
POD_MONITOR_SPEC = {**_MONITOR_COMMON,
                    "podMetricsEndpoints": [{**_SCRAPE_ENDPOINT, "portNumber": int}]}
PROMETHEUS_RULE_SPEC = {"groups": [{
    "name": str, "interval": str, "limit": int, "query_offset": str, "partial_response_strategy": str,
    "labels": STR_MAP,
    "rules": [{"record": str, "alert": str, "expr": ANY, "for": str, "keep_firing_for": str,
               "labels": STR_MAP, "annotations": STR_MAP}],
}]}

SCALED_OBJECT_SPEC = {
    "scaleTargetRef": {"apiVersion": str, "kind": str, "name": str, "envSourceContainerName": str},
    "pollingInterval": int, "cooldownPeriod": int, "initialCooldownPeriod": int,
    "idleReplicaCount": int, "minReplicaCount": int, "maxReplicaCount": int,
    "fallback": {"failureThreshold": int, "replicas": int, "behavior": str},
    "advanced": {
        "restoreToOriginalReplicaCount": bool,
        "horizontalPodAutoscalerConfig": {"name": str, "behavior": ANY},
        "scalingModifiers": {"formula": str, "target": str, "activationTarget": str, "metricType": str},
    },
    "triggers": [{
        "type": str, "name": str, "metadata": STR_MAP, "metricType": str, "useCachedMetrics": bool,
        "authenticationRef": {"name": str, "kind": str},
    }],
}
TRIGGER_AUTH_SPEC = {
    "secretTargetRef": [{"parameter": str, "name": str, "key": str}],
    "env": [{"parameter": str, "name": str, "containerName": str}],
    "configMapTargetRef": [{"parameter": str, "name": str, "key": str}],
    "podIdentity": {"provider": str, "identityId": str, "identityOwner": str, "roleArn": str,
                    "identityTenantId": str, "identityAuthorityHost": str},
    "boundServiceAccountToken": [{"parameter": str, "serviceAccountName": str}],
    "hashiCorpVault": ANY, "azureKeyVault": ANY, "awsSecretManager": ANY, "gcpSecretManager": ANY,
}

# Documented metadata keys of the triggers this fleet uses; others are reported (typos matter
# here: KEDA ignores unknown metadata silently and the scaler then never scales).
TRIGGER_METADATA: dict[str, set[str]] = {
    "metrics-api": {"url", "format", "valueLocation", "targetValue", "activationTargetValue",
                    "authMode", "method", "unsafeSsl", "aggregateFromKubeServiceEndpoints",
                    "aggregationType"},
    "nats-jetstream": {"natsServerMonitoringEndpoint", "account", "stream", "consumer", "lagThreshold",
                       "activationLagThreshold", "useHttps"},
}

CRDS: dict[tuple[str, str], dict[str, Any]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECT_SPEC,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): TRIGGER_AUTH_SPEC,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR_SPEC,
    ("monitoring.coreos.com/v1", "PodMonitor"): POD_MONITOR_SPEC,
    ("monitoring.coreos.com/v1", "PrometheusRule"): PROMETHEUS_RULE_SPEC,
}
REQUIRED_SPEC: dict[str, tuple[str, ...]] = {
    "ScaledObject": ("scaleTargetRef", "triggers"),
    "ServiceMonitor": ("endpoints", "selector"),
    "PodMonitor": ("podMetricsEndpoints", "selector"),
    "PrometheusRule": ("groups",),
}


def walk_schema(value: Any, schema: Any, path: str, problems: list[str]) -> None:
    if schema is ANY or value is None:
        return
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a mapping, got {type(value).__name__}")
            return
        for key, item in value.items():
            if key not in schema:
                problems.append(f"{path}.{key}: unknown field")
            else:
                walk_schema(item, schema[key], f"{path}.{key}", problems)
        return
    if isinstance(schema, list):
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        for i, item in enumerate(value):
            walk_schema(item, schema[0], f"{path}[{i}]", problems)
        return
    if isinstance(schema, MapOf):
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a mapping, got {type(value).__name__}")
            return
        for key, item in value.items():
            walk_schema(item, schema.item, f"{path}.{key}", problems)
        return
    ok = isinstance(value, schema) and not (isinstance(value, bool) and schema is not bool)
    if not ok:
        problems.append(f"{path}: expected {getattr(schema, '__name__', schema)}, got {type(value).__name__} {value!r}")


def _crd_problems(doc: dict[str, Any], spec_schema: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for key in doc:
        if key not in ("apiVersion", "kind", "metadata", "spec"):
            problems.append(f".{key}: unknown field")
    walk_model(doc.get("metadata"), "V1ObjectMeta", ".metadata", problems)
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        return problems + [".spec: required mapping missing"]
    walk_schema(spec, spec_schema, ".spec", problems)
    for key in REQUIRED_SPEC.get(doc["kind"], ()):
        if key not in spec:
            problems.append(f".spec.{key}: required field missing")
    if doc["kind"] == "ScaledObject":
        for i, trig in enumerate(spec.get("triggers") or []):
            allowed = TRIGGER_METADATA.get(trig.get("type"))
            if allowed is None:
                continue
            for key in (trig.get("metadata") or {}):
                if key not in allowed:
                    problems.append(f".spec.triggers[{i}].metadata.{key}: unknown {trig['type']} trigger metadata")
    if doc["kind"] == "PrometheusRule":
        for g, group in enumerate(spec.get("groups") or []):
            for r, rule in enumerate(group.get("rules") or []):
                if ("alert" in rule) == ("record" in rule):
                    problems.append(f".spec.groups[{g}].rules[{r}]: exactly one of alert/record is required")
                if "expr" not in rule:
                    problems.append(f".spec.groups[{g}].rules[{r}].expr: required field missing")
    return problems


# ---------------------------------------------------------------- entry points

def validate_manifest(doc: dict[str, Any]) -> list[str]:
    """Every problem of one manifest, as "<Kind>/<name>: <path>: <message>"; [] when valid."""
    kind, api = doc.get("kind"), doc.get("apiVersion")
    name = (doc.get("metadata") or {}).get("name", "?") if isinstance(doc.get("metadata"), dict) else "?"
    where = f"{kind}/{name}"
    if not (doc.get("metadata") or {}).get("name"):
        return [f"{where}: .metadata.name: required"]
    if (api, kind) in BUILTIN:
        model = BUILTIN[(str(api), str(kind))]
        problems: list[str] = []
        walk_model(doc, model.__name__, "", problems)
        reported = {p.split(": ", 1)[0] for p in problems}
        problems += [p for p in _pydantic_problems(model, doc) if p.split(": ", 1)[0] not in reported]
    elif (api, kind) in CRDS:
        problems = _crd_problems(doc, CRDS[(str(api), str(kind))])
    else:
        return [f"{where}: no schema for apiVersion={api!r} kind={kind!r}"]
    return [f"{where}: {p}" for p in problems]


def validate_documents(docs: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for doc in docs:
        out.extend(validate_manifest(doc))
    return out
