"""Run one container as a Kubernetes Job through the official `kubernetes` client and say how it
ended: create the ConfigMap its files come from (if any) and the Job, poll the Job until it
completes or fails, read the pod's terminated state and its log, then delete both (whatever
happened). The client is synchronous, so the whole life of a Job runs in a thread; a cancelled
step stops the wait and still deletes what it made.

The cluster is the in-cluster one (KUBERNETES_SERVICE_HOST set, as in a pod) or else the one
KUBECONFIG (or ~/.kube/config) names. A fresh ApiClient per Job: nothing global is configured."""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import re
import secrets
import threading
import time
from typing import Any

import msgspec

from .base import ToolError

log = logging.getLogger("noetl.worker.kube_jobs")

POLL_SECONDS = 0.5
LOG_LIMIT = 256 * 1024  # of the pod's log kept in the result (the tail)


class JobSpec(msgspec.Struct, kw_only=True):
    name: str  # base name; a random suffix makes it unique
    namespace: str
    image: str
    command: list[str]
    args: list[str] = []
    env: dict[str, str] = {}
    resources: dict[str, Any] | None = None
    backoff_limit: int = 0
    restart_policy: str = "Never"
    service_account: str | None = None
    active_deadline_seconds: int | None = None
    ttl_seconds_after_finished: int | None = None
    files: dict[str, str] = {}  # ConfigMap data, mounted at files_mount
    files_mount: str = "/workspace"
    labels: dict[str, str] = {}


class JobEnd(msgspec.Struct, kw_only=True):
    job_name: str
    namespace: str
    succeeded: bool
    terminal_state: str  # succeeded | failed_oom | failed_deadline | failed
    reason: str | None  # the pod's terminated reason (Completed, Error, OOMKilled) or the Job's condition
    exit_code: int | None
    pod_name: str | None
    logs: str
    start_time: str | None
    completion_time: str | None
    succeeded_pods: int = 0
    failed_pods: int = 0
    config_map: str | None = None


def dns_name(text: str, limit: int = 52) -> str:
    """A Kubernetes object name from free text (lowercase alphanumerics and '-'), room left for a suffix."""
    base = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")[:limit].strip("-")
    return base or "noetl-job"


def api_client() -> Any:
    from kubernetes import client, config

    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        return client.ApiClient(configuration)
    try:
        # KUBECONFIG read now: the client's own default is fixed when it is first imported
        return config.new_client_from_config(config_file=os.environ.get("KUBECONFIG") or None)
    except (config.ConfigException, OSError) as exc:
        raise ToolError(f"no Kubernetes cluster to run the job on: not in a pod and no usable kubeconfig ({exc})") from None


async def run_job(spec: JobSpec, timeout: float) -> JobEnd:
    """Runs the Job to its end (or `timeout` seconds, then the Job is deleted: failed_deadline)."""
    stop = threading.Event()
    try:
        return await asyncio.to_thread(_run, spec, timeout, stop)
    except asyncio.CancelledError:
        stop.set()  # the thread sees it within a poll and deletes the Job
        raise


def _run(spec: JobSpec, timeout: float, stop: threading.Event) -> JobEnd:
    from kubernetes import client
    from kubernetes.client import ApiException

    job_name = f"{dns_name(spec.name)}-{secrets.token_hex(4)}"
    config_map = f"{job_name}-files" if spec.files else None
    with api_client() as api:
        batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
        created: list[str] = []
        try:
            if config_map:
                core.create_namespaced_config_map(spec.namespace, client.V1ConfigMap(
                    metadata=client.V1ObjectMeta(name=config_map, labels=spec.labels), data=spec.files))
                created.append("configmap")
            batch.create_namespaced_job(spec.namespace, _job(client, spec, job_name, config_map))
            created.append("job")
            job = _wait(batch, spec.namespace, job_name, timeout, stop)
            return _ending(core, spec.namespace, job_name, job, config_map)
        except ApiException as exc:
            raise ToolError(f"Kubernetes API refused job {job_name} in namespace {spec.namespace!r}: "
                            f"{exc.status} {exc.reason}: {str(exc.body)[:300]}") from None
        finally:
            if "job" in created:
                _delete(lambda: batch.delete_namespaced_job(job_name, spec.namespace,
                                                            propagation_policy="Background"))
            if "configmap" in created and config_map:
                _delete(lambda: core.delete_namespaced_config_map(config_map, spec.namespace))


def _job(client: Any, spec: JobSpec, job_name: str, config_map: str | None) -> Any:
    mounts, volumes = [], []
    if config_map:
        volumes.append(client.V1Volume(name="files", config_map=client.V1ConfigMapVolumeSource(name=config_map)))
        mounts.append(client.V1VolumeMount(name="files", mount_path=spec.files_mount))
    limits = (spec.resources or {}).get("limits")
    requests = (spec.resources or {}).get("requests")
    container = client.V1Container(
        name="main", image=spec.image, command=spec.command or None, args=spec.args or None,
        env=[client.V1EnvVar(name=k, value=v) for k, v in spec.env.items()] or None,
        resources=client.V1ResourceRequirements(limits=limits, requests=requests) if limits or requests else None,
        volume_mounts=mounts or None)
    labels = {"app": "noetl", **spec.labels}
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=job_name, labels=labels),
        spec=client.V1JobSpec(
            backoff_limit=spec.backoff_limit, active_deadline_seconds=spec.active_deadline_seconds,
            ttl_seconds_after_finished=spec.ttl_seconds_after_finished,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[container], restart_policy=spec.restart_policy,
                                      service_account_name=spec.service_account, volumes=volumes or None))))


def _wait(batch: Any, namespace: str, job_name: str, timeout: float, stop: threading.Event) -> Any | None:
    """The Job once it has a Complete or Failed condition; None when `timeout` passed first."""
    deadline = time.monotonic() + timeout
    while not stop.is_set():
        job = batch.read_namespaced_job_status(job_name, namespace)
        for condition in (job.status and job.status.conditions) or []:
            if condition.type in ("Complete", "Failed") and condition.status == "True":
                return job
        if time.monotonic() > deadline:
            return None
        stop.wait(POLL_SECONDS)
    raise asyncio.CancelledError()


def _ending(core: Any, namespace: str, job_name: str, job: Any | None, config_map: str | None) -> JobEnd:
    pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={job_name}").items
    pods.sort(key=lambda p: p.metadata.creation_timestamp or datetime.datetime.min.replace(tzinfo=datetime.UTC))
    pod = pods[-1] if pods else None  # the last attempt says how the Job ended
    terminated = None
    if pod is not None:
        for status in (pod.status and pod.status.container_statuses) or []:
            if status.state and status.state.terminated:
                terminated = status.state.terminated
    logs = ""
    if pod is not None:
        try:
            logs = core.read_namespaced_pod_log(pod.metadata.name, namespace) or ""
        except Exception as exc:  # a pod without a log still has an outcome
            logs = f"(log unavailable: {exc})"
    status = job.status if job is not None else None
    condition = next((c for c in (status.conditions if status else None) or [] if c.status == "True"), None)
    succeeded = bool(condition and condition.type == "Complete")
    reason = terminated.reason if terminated is not None else (condition.reason if condition else None)
    if succeeded:
        state = "succeeded"
    elif job is None or (condition and condition.reason == "DeadlineExceeded"):
        state, reason = "failed_deadline", reason or "DeadlineExceeded"
    elif reason == "OOMKilled":
        state = "failed_oom"
    else:
        state = "failed"
    return JobEnd(job_name=job_name, namespace=namespace, succeeded=succeeded, terminal_state=state, reason=reason,
                  exit_code=terminated.exit_code if terminated is not None else None,
                  pod_name=pod.metadata.name if pod is not None else None, logs=logs[-LOG_LIMIT:],
                  start_time=_iso(status.start_time if status else None),
                  completion_time=_iso(status.completion_time if status else None),
                  succeeded_pods=(status.succeeded or 0) if status else 0,
                  failed_pods=(status.failed or 0) if status else 0, config_map=config_map)


def _iso(value: datetime.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _delete(call: Any) -> None:
    """Cleanup must not hide how the Job ended: a failed delete is logged (the Job's TTL, when
    set, removes it later)."""
    from kubernetes.client import ApiException

    try:
        call()
    except ApiException as exc:
        if exc.status != 404:
            log.warning("could not delete a finished job's object: %s %s", exc.status, exc.reason)
    except Exception as exc:
        log.warning("could not delete a finished job's object: %s", exc)
