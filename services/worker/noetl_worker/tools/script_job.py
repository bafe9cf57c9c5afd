"""`kind: script`: run a Python script as a Kubernetes Job, as NoETL's script tool does. The script
text comes from `script: {uri, source}` (scripts.py: inline, file, http, gcs, s3; azure needs a
backend) and is mounted from a ConfigMap at /scripts/script.py; the container runs
`python3 -u /scripts/script.py '<args as JSON>'` (after `pip3 install` of `job.install_dependencies`),
the args being the step's `input` / `args`. `job`: `image` (python:3.11-slim), `namespace` (noetl),
`backoffLimit` (3), `ttlSecondsAfterFinished` (300), `resources`, `env` (NAME: value; non-strings
as JSON), `timeout` (600 s).

Result (NoETL's shape): `{status: completed, job_name, namespace, pod_name, execution_time, output
(the pod's log), succeeded, failed, exit_code, kubectl_logs, kubectl_describe}`; a Job that failed
is a ToolError with its exit code and the log's tail."""

from __future__ import annotations

import json
import shlex
import time
from typing import Any

from .base import ToolContext, ToolError
from .container_tool import env_map
from .kube_jobs import JobSpec, run_job
from .scripts import script_text

SCRIPT_DIR = "/scripts"


def _number(job: dict[str, Any], field: str, default: int) -> int:
    value = job.get(field, default)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ToolError(f"script `job.{field}` must be a whole number, got {value!r}") from None


def command(args: dict[str, Any], dependencies: list[str]) -> list[str]:
    run = f"python3 -u {SCRIPT_DIR}/script.py {shlex.quote(json.dumps(args))}"
    if dependencies:
        run = f"pip3 install --quiet {' '.join(shlex.quote(d) for d in dependencies)} && {run}"
    return ["sh", "-c", run]


async def run(config: dict[str, Any], inputs: dict[str, Any], ctx: ToolContext) -> Any:
    if not config.get("script"):
        raise ToolError("script tool needs `script` ({uri, source}): the Python script to run as a Job")
    job = config.get("job") or {}
    if not isinstance(job, dict):
        raise ToolError("script `job` must be a mapping (image, namespace, resources, env, ...)")
    dependencies = job.get("install_dependencies") or []
    if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        raise ToolError("script `job.install_dependencies` must be a list of package names")
    env = job.get("env") or {}
    if isinstance(env, dict):  # NoETL passes non-string values to the pod as JSON
        env = {k: v if isinstance(v, str) else json.dumps(v) for k, v in env.items()}
    text = await script_text("script", config["script"], ctx)
    args = config.get("args") if isinstance(config.get("args"), dict) else inputs
    timeout = float(_number(job, "timeout", 600))
    spec = JobSpec(name=f"script-{ctx.step}-{ctx.execution_id}", namespace=str(job.get("namespace") or "noetl"),
                   image=str(job.get("image") or "python:3.11-slim"), command=command(args or {}, dependencies),
                   env=env_map(env, "job.env"), resources=job.get("resources") or None,
                   backoff_limit=_number(job, "backoffLimit", 3),
                   ttl_seconds_after_finished=_number(job, "ttlSecondsAfterFinished", 300),
                   files={"script.py": text}, files_mount=SCRIPT_DIR,
                   labels={"noetl.io/execution-id": str(ctx.execution_id)})
    began = time.monotonic()
    end = await run_job(spec, timeout)
    if not end.succeeded:
        tail = end.logs.strip()[-1500:]
        raise ToolError(f"script job {end.job_name} failed: exit_code={end.exit_code}, k8s_failed={end.failed_pods}, "
                        f"reason={end.reason}" + (f": {tail}" if tail else ""),
                        details={"kind": "script", "terminal_state": end.terminal_state, "exit_code": end.exit_code,
                                 "job_name": end.job_name, "retryable": False})
    return {"status": "completed", "job_name": end.job_name, "namespace": end.namespace, "pod_name": end.pod_name,
            "execution_time": round(time.monotonic() - began, 3), "output": end.logs,
            "succeeded": end.succeeded_pods, "failed": end.failed_pods, "exit_code": end.exit_code,
            "kubectl_logs": f"kubectl logs {end.pod_name} -n {end.namespace}" if end.pod_name else None,
            "kubectl_describe": f"kubectl describe job {end.job_name} -n {end.namespace}"}
