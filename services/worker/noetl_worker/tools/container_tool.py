"""`kind: container`: run `image` with `command` + `args` as a Kubernetes Job (kube_jobs.py) and wait
for it, as NoETL's container tool does. Config (NoETL's flat form): `image`, `command`, `args`
(lists of strings), `env` (a list of `{name, value}` or a mapping), `resources` (`requests` /
`limits`), `namespace` (default `default`), `service_account`, `backoff_limit` (default 0),
`restart_policy` (default Never), `timeout_seconds`, `files` (name -> text, mounted under
/workspace from a ConfigMap).

Result `{status: succeeded, terminal_state, job_name, namespace, pod_name, exit_code, logs,
start_time, completion_time}`. A Job that fails is a ToolError naming its terminal state
(`failed_oom` when the pod was OOMKilled, `failed_deadline` past `timeout_seconds`, else
`failed`) with the log's tail, so the step fails and the playbook sees why."""

from __future__ import annotations

from typing import Any

from .base import ToolContext, ToolError
from .kube_jobs import JobSpec, run_job


def string_list(config: dict[str, Any], field: str) -> list[str]:
    value = config.get(field)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise ToolError(f"container `{field}` must be a list of strings, got {type(value).__name__}")
    return [str(v) for v in value]


def env_map(value: Any, field: str = "env") -> dict[str, str]:
    """`[{name, value}]` (the Kubernetes form) or `{NAME: value}`; values become strings."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    if isinstance(value, list):
        out = {}
        for i, entry in enumerate(value):
            if not isinstance(entry, dict) or not entry.get("name"):
                raise ToolError(f"`{field}[{i}]` must be a mapping with `name` and `value`")
            out[str(entry["name"])] = "" if entry.get("value") is None else str(entry["value"])
        return out
    raise ToolError(f"`{field}` must be a list of {{name, value}} or a mapping, got {type(value).__name__}")


def whole(config: dict[str, Any], field: str, default: int | None) -> int | None:
    value = config.get(field)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ToolError(f"container `{field}` must be a whole number, got {value!r}") from None


async def run(config: dict[str, Any], inputs: dict[str, Any], ctx: ToolContext) -> Any:
    image = config.get("image")
    if not isinstance(image, str) or not image.strip():
        raise ToolError("container tool needs `image` (the container image to run)")
    command, args = string_list(config, "command"), string_list(config, "args")
    if not command and not args:
        raise ToolError("container tool needs `command` (and/or `args`): what to run in the image")
    resources = config.get("resources")
    if resources is not None and not isinstance(resources, dict):
        raise ToolError("container `resources` must be a mapping with `requests` and/or `limits`")
    files = config.get("files") or {}
    if not isinstance(files, dict):
        raise ToolError("container `files` must be a mapping of file name -> text")
    timeout = float(whole(config, "timeout_seconds", None) or ctx.timeout_seconds)
    spec = JobSpec(name=str(config.get("name") or f"noetl-{ctx.step}"), namespace=str(config.get("namespace") or "default"),
                   image=image, command=command, args=args, env=env_map(config.get("env")), resources=resources,
                   backoff_limit=whole(config, "backoff_limit", 0) or 0,
                   restart_policy=str(config.get("restart_policy") or "Never"),
                   service_account=config.get("service_account") or None,
                   active_deadline_seconds=int(timeout),
                   files={str(k): str(v) for k, v in files.items()},
                   labels={"noetl.io/execution-id": str(ctx.execution_id)})
    end = await run_job(spec, timeout)
    if not end.succeeded:
        tail = end.logs.strip()[-1500:]
        raise ToolError(f"container job {end.job_name} failed: {end.reason or 'unknown'} "
                        f"(terminal state {end.terminal_state}, exit code {end.exit_code})"
                        + (f": {tail}" if tail else ""),
                        details={"kind": "container", "terminal_state": end.terminal_state,
                                 "exit_code": end.exit_code, "job_name": end.job_name, "failed_pods": end.failed_pods,
                                 "retryable": False})
    return {"status": "succeeded", "terminal_state": end.terminal_state, "job_name": end.job_name,
            "namespace": end.namespace, "pod_name": end.pod_name, "exit_code": end.exit_code, "logs": end.logs,
            "start_time": end.start_time, "completion_time": end.completion_time}
