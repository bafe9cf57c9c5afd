"""The Kubernetes platform, on the official client: shards are the pods of StatefulSet
`api-shard` (pod ordinal == shard index); in the dev overlay each shard's Postgres is the pod of
the same ordinal in StatefulSet `postgres-shard`. The calls it makes: read and patch a
StatefulSet's scale subresource, list pods by label (readiness), and read a projector pod's
/metrics through the API server's pod proxy."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from .errors import OpsError
from .fleet_api import FleetApi
from .platform import Say
from .prom import lag_by_shard

T = TypeVar("T")

SHARDS = "api-shard"
SHARD_POSTGRES = "postgres-shard"   # dev overlay only; absent in prod (managed Postgres)
PROJECTOR = "projector"
NAME_LABEL = "app.kubernetes.io/name"


def api_client(kubeconfig: str | None, context: str | None) -> client.ApiClient:
    """The kubeconfig named (or KUBECONFIG / ~/.kube/config), else the pod's service account."""
    default = Path(os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0]).expanduser()
    try:
        if kubeconfig or default.exists() or "KUBERNETES_SERVICE_HOST" not in os.environ:
            return config.new_client_from_config(config_file=kubeconfig, context=context)
        cfg = client.Configuration()
        config.load_incluster_config(client_configuration=cfg)
        return client.ApiClient(cfg)
    except (config.ConfigException, OSError) as exc:
        raise OpsError(f"Kubernetes configuration: {exc}") from None


def ordinal(pod_name: str, statefulset: str) -> int | None:
    prefix = statefulset + "-"
    tail = pod_name[len(prefix):] if pod_name.startswith(prefix) else ""
    return int(tail) if tail.isdigit() else None


def pod_ready(pod: Any) -> bool:
    if pod.metadata.deletion_timestamp is not None:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def pod_state(pod: Any | None) -> str:
    """One word or phrase for the operator: ready, a waiting reason with its message, a phase."""
    if pod is None:
        return "not created yet"
    if pod.metadata.deletion_timestamp is not None:
        return "terminating"
    if pod_ready(pod):
        return "ready"
    for cs in pod.status.container_statuses or []:
        waiting = cs.state.waiting if cs.state else None
        if waiting and waiting.reason:
            last = cs.last_state.terminated if cs.last_state else None
            detail = (last.message or "").strip() if last else ""
            return f"{waiting.reason}" + (f" ({detail[:160]})" if detail else "")
    return f"{pod.status.phase or 'Pending'}, not ready"


class KubernetesPlatform:
    def __init__(self, api: client.ApiClient, namespace: str, say: Say, *, ready_timeout: float,
                 poll_seconds: float, projector_port: int = 8092, projectors: list[str] | None = None,
                 fleet: FleetApi | None = None) -> None:
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.say = say
        self.name = f"Kubernetes namespace {namespace}"
        self.ready_timeout = ready_timeout
        self.poll_seconds = poll_seconds
        self.projector_port = projector_port
        self.projectors = projectors   # explicit projector URLs instead of the pod proxy
        self.fleet = fleet

    async def _k8s(self, what: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await asyncio.to_thread(call, *args, **kwargs)
        except ApiException as exc:
            raise OpsError(f"Kubernetes API, {what}: {exc.status} {exc.reason}") from None
        except Urllib3Error as exc:
            raise OpsError(f"Kubernetes API, {what}: cannot reach the API server ({exc})") from None

    async def _scale_of(self, statefulset: str) -> int | None:
        """spec.replicas of a StatefulSet, None when it does not exist."""
        try:
            scale = await asyncio.to_thread(self.apps.read_namespaced_stateful_set_scale, statefulset, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise OpsError(f"Kubernetes API, reading statefulset/{statefulset} scale: {exc.status} {exc.reason}") from None
        except Urllib3Error as exc:
            raise OpsError(f"Kubernetes API: cannot reach the API server ({exc})") from None
        return (scale.spec.replicas if scale.spec is not None else 0) or 0

    async def _patch_scale(self, statefulset: str, replicas: int) -> None:
        self.say(f"statefulset/{statefulset}: replicas -> {replicas}")
        await self._k8s(f"scaling statefulset/{statefulset}", self.apps.patch_namespaced_stateful_set_scale,
                        statefulset, self.namespace, {"spec": {"replicas": replicas}})

    async def _pods(self, statefulset: str) -> dict[int, Any]:
        pods = await self._k8s(f"listing {statefulset} pods", self.core.list_namespaced_pod, self.namespace,
                               label_selector=f"{NAME_LABEL}={statefulset}")
        found = {}
        for pod in pods.items:
            i = ordinal(pod.metadata.name, statefulset) if pod.metadata is not None and pod.metadata.name else None
            if i is not None:
                found[i] = pod
        return found

    async def _wait(self, statefulset: str, ready: range, gone: range = range(0)) -> None:
        """Until the pods of `ready` are Ready and those of `gone` no longer exist; prints each
        pod's state when it changes, and names the stuck ones on timeout."""
        deadline = time.monotonic() + self.ready_timeout
        shown: dict[int, str] = {}
        while True:
            pods = await self._pods(statefulset)
            states = {i: pod_state(pods.get(i)) for i in ready}
            states.update({i: "terminating" if i in pods else "gone" for i in gone})
            for i, state in states.items():
                if shown.get(i) != state:
                    self.say(f"  {statefulset}-{i}: {state}")
            shown = states
            stuck = {i: s for i, s in states.items() if s not in ("ready", "gone")}
            if not stuck:
                return
            if time.monotonic() > deadline:
                names = ", ".join(f"{statefulset}-{i} {s}" for i, s in stuck.items())
                raise OpsError(f"not done after {self.ready_timeout:.0f}s: {names}; fix that and re-run the "
                               "same command, it continues from where the fleet is")
            await asyncio.sleep(self.poll_seconds)

    async def replicas(self) -> int:
        replicas = await self._scale_of(SHARDS)
        if replicas is None:
            raise OpsError(f"no statefulset/{SHARDS} in namespace {self.namespace} (wrong --namespace or context?)")
        return replicas

    async def grow(self, count: int) -> None:
        # A shard migrates its database at start, so in dev its Postgres must be ready first.
        databases = await self._scale_of(SHARD_POSTGRES)
        if databases is not None:
            if databases < count:
                await self._patch_scale(SHARD_POSTGRES, count)
            await self._wait(SHARD_POSTGRES, range(count))
        if await self.replicas() < count:
            await self._patch_scale(SHARDS, count)
        await self._wait(SHARDS, range(count))

    async def shrink(self, count: int) -> None:
        before = await self.replicas()
        if before > count:
            await self._patch_scale(SHARDS, count)
        await self._wait(SHARDS, range(0), range(count, max(before, count)))
        databases = await self._scale_of(SHARD_POSTGRES)
        if databases is not None and databases > count:
            # The PersistentVolumeClaims stay (StatefulSets keep them): scaling back up finds the data.
            await self._patch_scale(SHARD_POSTGRES, count)
            await self._wait(SHARD_POSTGRES, range(0), range(count, databases))

    async def readiness(self) -> dict[int, bool]:
        return {i: pod_ready(pod) for i, pod in (await self._pods(SHARDS)).items()}

    async def shard_urls(self) -> dict[int, str]:
        return {}  # pod addresses are cluster-internal: status goes through the router

    async def projector_lag(self) -> dict[int, float] | None:
        """Every projector replica's /metrics through the API server's pod proxy (no bearer needed:
        /metrics is public), merged: a replica exports only the shards it projects."""
        if self.projectors and self.fleet is not None:
            return await self.fleet.projector_lag(self.projectors)
        merged: dict[int, float] = {}
        answered = False
        for name in sorted(p.metadata.name for p in (await self._pods(PROJECTOR)).values()):
            try:
                text = await asyncio.to_thread(self.core.connect_get_namespaced_pod_proxy_with_path,
                                               f"{name}:{self.projector_port}", self.namespace, "metrics")
            except (ApiException, Urllib3Error):
                continue
            merged.update(lag_by_shard(text))
            answered = True
        return merged if answered else None
