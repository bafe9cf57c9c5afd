"""A stand-in of the Kubernetes API under /k8s (what a kubeconfig's `server` names) for the parts a
worker's Job runner uses: batch/v1 Jobs, core/v1 ConfigMaps, Pods (list by label, read) and pod
logs. It RUNS each Job: a pod per attempt (up to backoffLimit + 1), its init containers then its
first container, each as a local process, so exit codes, logs and OOM kills are real.

How a pod maps onto this host:
- image: `python*` images get a virtualenv of this Python (one per image, made on first use) first
  on PATH, so `python3` / `pip3` in the command are that venv's (`pip3 install` installs into it);
  any other image (alpine, busybox, ...) runs its command with the host's PATH (`/bin/sh` and
  friends). No image is pulled.
- volumes: each emptyDir / configMap volume is a directory under the pod's directory (a ConfigMap's
  keys written as files); a mount path inside the command, args or env values is rewritten to that
  directory, and the process runs in the pod's directory.
- resources.limits.memory: enforced by a memory cgroup (v1) made for the container, whose OOM kill
  is the pod's `OOMKilled`; on a host where no cgroup can be made, by RLIMIT_AS (an allocation past
  the limit then fails; the process dying of it is reported OOMKilled).
- activeDeadlineSeconds: the running process is killed and the Job fails with DeadlineExceeded.
Deleting a Job kills its running process."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import re
import resource
import secrets
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

PREFIX = "/k8s"
UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30,
         "Ti": 1 << 40}


class KubeState:
    """Objects by (namespace, name), the running Jobs' tasks and where pods live on disk."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config_maps: dict[tuple[str, str], dict[str, Any]] = {}
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.tasks: dict[tuple[str, str], asyncio.Task] = {}
        self.venvs: dict[str, Path] = {}
        self.venv_lock = asyncio.Lock()
        self.cgroup_parent = memory_cgroup_parent()


KUBE = web.AppKey("kube", KubeState)


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def memory_bytes(quantity: Any) -> int | None:
    """A Kubernetes memory quantity ("32Mi", "512M", "1Gi", "1000") in bytes; None when absent."""
    if quantity in (None, ""):
        return None
    match = re.fullmatch(r"\s*([0-9.]+)\s*([kMGT]i?|)\s*", str(quantity))
    if not match:
        raise ValueError(f"not a memory quantity: {quantity!r}")
    return int(float(match.group(1)) * UNITS[match.group(2)])


def memory_cgroup_parent() -> Path | None:
    """This process's own cgroup-v1 memory directory when children can be made in it, else None."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            parent = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            return parent if (parent / "memory.limit_in_bytes").exists() and os.access(parent, os.W_OK) else None
    return None


def status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                              "message": message, "reason": reason, "code": code}, status=code)


def not_found(kind: str, name: str) -> web.Response:
    return status(404, "NotFound", f'{kind} "{name}" not found')


async def _body(request: web.Request, kind: str) -> dict[str, Any] | web.Response:
    try:
        body = await request.json()
    except ValueError:
        return status(400, "BadRequest", f"{kind} body is not JSON")
    name = (body.get("metadata") or {}).get("name") if isinstance(body, dict) else None
    if not name:
        return status(422, "Invalid", f"{kind}.metadata.name: Required value")
    return body


def _stamp(body: dict[str, Any], namespace: str) -> dict[str, Any]:
    meta = body.setdefault("metadata", {})
    meta.update(namespace=namespace, uid=secrets.token_hex(16), creationTimestamp=now(), resourceVersion="1")
    return body


async def create_config_map(request: web.Request) -> web.Response:
    state, ns = request.app[KUBE], request.match_info["ns"]
    body = await _body(request, "ConfigMap")
    if isinstance(body, web.Response):
        return body
    key = (ns, body["metadata"]["name"])
    if key in state.config_maps:
        return status(409, "AlreadyExists", f'configmaps "{key[1]}" already exists')
    state.config_maps[key] = _stamp({**body, "kind": "ConfigMap", "apiVersion": "v1"}, ns)
    return web.json_response(state.config_maps[key], status=201)


async def delete_config_map(request: web.Request) -> web.Response:
    state, ns, name = request.app[KUBE], request.match_info["ns"], request.match_info["name"]
    if state.config_maps.pop((ns, name), None) is None:
        return not_found("configmaps", name)
    return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}})


async def create_job(request: web.Request) -> web.Response:
    state, ns = request.app[KUBE], request.match_info["ns"]
    body = await _body(request, "Job")
    if isinstance(body, web.Response):
        return body
    name = body["metadata"]["name"]
    containers = (((body.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers")
    if not containers:
        return status(422, "Invalid", "Job.spec.template.spec.containers: Required value")
    if (ns, name) in state.jobs:
        return status(409, "AlreadyExists", f'jobs.batch "{name}" already exists')
    job = _stamp({**body, "kind": "Job", "apiVersion": "batch/v1"}, ns)
    job["status"] = {}
    state.jobs[(ns, name)] = job
    state.tasks[(ns, name)] = asyncio.create_task(run_job(state, ns, job))
    return web.json_response(job, status=201)


async def read_job(request: web.Request) -> web.Response:
    state, ns, name = request.app[KUBE], request.match_info["ns"], request.match_info["name"]
    job = state.jobs.get((ns, name))
    return web.json_response(job) if job else not_found("jobs.batch", name)


async def delete_job(request: web.Request) -> web.Response:
    state, ns, name = request.app[KUBE], request.match_info["ns"], request.match_info["name"]
    job = state.jobs.pop((ns, name), None)
    if job is None:
        return not_found("jobs.batch", name)
    task = state.tasks.pop((ns, name), None)
    if task and not task.done():
        task.cancel()  # kills its process
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    for key in [k for k, pod in state.pods.items() if k[0] == ns and _labels(pod).get("job-name") == name]:
        del state.pods[key]
        shutil.rmtree(state.root / ns / key[1], ignore_errors=True)
    return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}})


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


async def list_pods(request: web.Request) -> web.Response:
    state, ns = request.app[KUBE], request.match_info["ns"]
    wanted = dict(part.split("=", 1) for part in request.query.get("labelSelector", "").split(",") if "=" in part)
    items = [pod for (pns, _), pod in state.pods.items()
             if pns == ns and all(_labels(pod).get(k) == v for k, v in wanted.items())]
    return web.json_response({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})


async def read_pod(request: web.Request) -> web.Response:
    state, ns, name = request.app[KUBE], request.match_info["ns"], request.match_info["name"]
    pod = state.pods.get((ns, name))
    return web.json_response(pod) if pod else not_found("pods", name)


async def pod_log(request: web.Request) -> web.Response:
    state, ns, name = request.app[KUBE], request.match_info["ns"], request.match_info["name"]
    pod = state.pods.get((ns, name))
    if pod is None:
        return not_found("pods", name)
    container = request.query.get("container") or pod["spec"]["containers"][0]["name"]
    path = state.root / ns / name / "logs" / f"{container}.log"
    if not path.exists():
        return status(400, "BadRequest", f'container "{container}" in pod "{name}" is waiting to start')
    return web.Response(text=path.read_text(errors="replace"), content_type="text/plain")


async def run_job(state: KubeState, ns: str, job: dict[str, Any]) -> None:
    """The Job controller: pods until one succeeds or backoffLimit + 1 have failed, within
    activeDeadlineSeconds."""
    spec, st = job["spec"], job["status"]
    st.update(startTime=now(), active=0)
    deadline = spec.get("activeDeadlineSeconds")
    try:
        await asyncio.wait_for(_attempts(state, ns, job), float(deadline) if deadline else None)
    except asyncio.TimeoutError:
        st.update(active=0, failed=st.get("failed", 0) + 1)
        _condition(st, "Failed", "DeadlineExceeded", "Job was active longer than specified deadline")


async def _attempts(state: KubeState, ns: str, job: dict[str, Any]) -> None:
    spec, st = job["spec"], job["status"]
    name = job["metadata"]["name"]
    for _ in range(int(spec.get("backoffLimit", 6)) + 1):
        st["active"] = 1
        ok = await run_pod(state, ns, name, job["metadata"]["uid"], spec["template"])
        st["active"] = 0
        if ok:
            st.update(succeeded=1, completionTime=now())
            _condition(st, "Complete", None, None)
            return
        st["failed"] = st.get("failed", 0) + 1
    _condition(st, "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")


def _condition(st: dict[str, Any], kind: str, reason: str | None, message: str | None) -> None:
    st.setdefault("conditions", []).append({"type": kind, "status": "True", "lastProbeTime": now(),
                                            "lastTransitionTime": now(), "reason": reason, "message": message})


async def run_pod(state: KubeState, ns: str, job_name: str, job_uid: str, template: dict[str, Any]) -> bool:
    pod_name = f"{job_name}-{secrets.token_hex(3)}"
    pod_spec = template.get("spec") or {}
    labels = {**_labels(template), "job-name": job_name, "batch.kubernetes.io/job-name": job_name,
              "controller-uid": job_uid}
    pod = _stamp({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": pod_name, "labels": labels},
                  "spec": pod_spec, "status": {"phase": "Pending"}}, ns)
    state.pods[(ns, pod_name)] = pod
    directory = state.root / ns / pod_name
    (directory / "logs").mkdir(parents=True)
    try:
        volumes = _volumes(state, ns, directory, pod_spec.get("volumes") or [])
    except KeyError as exc:
        return _finish(pod, pod_spec["containers"][0], 1, "CreateContainerConfigError", str(exc))
    pod["status"].update(phase="Running", startTime=now())
    for init in pod_spec.get("initContainers") or []:
        code, reason = await run_container(state, directory, init, volumes)
        if code != 0:
            return _finish(pod, init, code, reason, f"init container {init.get('name')} failed")
    main = pod_spec["containers"][0]
    code, reason = await run_container(state, directory, main, volumes)
    return _finish(pod, main, code, reason, None)


def _finish(pod: dict[str, Any], container: dict[str, Any], code: int, reason: str, message: str | None) -> bool:
    pod["status"].update(phase="Succeeded" if code == 0 else "Failed", containerStatuses=[{
        "name": container.get("name") or "main", "image": container.get("image") or "", "imageID": "",
        "ready": False, "restartCount": 0, "started": False,
        "state": {"terminated": {"exitCode": code, "reason": reason, "message": message,
                                 "startedAt": pod["status"].get("startTime") or now(), "finishedAt": now()}}}])
    return code == 0


def _volumes(state: KubeState, ns: str, directory: Path, volumes: list[dict[str, Any]]) -> dict[str, Path]:
    out = {}
    for volume in volumes:
        path = directory / "volumes" / volume["name"]
        path.mkdir(parents=True)
        source = volume.get("configMap")
        if source:
            config_map = state.config_maps.get((ns, source.get("name")))
            if config_map is None:
                raise KeyError(f'configmap "{source.get("name")}" not found')
            data = config_map.get("data") or {}
            items = source.get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                target = path / item["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(data.get(item["key"], ""))
        out[volume["name"]] = path
    return out


async def run_container(state: KubeState, directory: Path, container: dict[str, Any],
                        volumes: dict[str, Path]) -> tuple[int, str]:
    """Exit code and terminated reason (Completed, Error, OOMKilled) of one container run."""
    mounts = {m["mountPath"].rstrip("/") or "/": volumes[m["name"]] for m in container.get("volumeMounts") or []
              if m.get("name") in volumes}
    argv = [_remap(a, mounts) for a in (container.get("command") or []) + (container.get("args") or [])]
    log_path = directory / "logs" / f"{container.get('name') or 'main'}.log"
    if not argv:
        log_path.write_text("this stand-in runs no image entrypoint: the container needs a command\n")
        return 1, "Error"
    image_bin = await _image_bin(state, str(container.get("image") or ""))
    env = {"PATH": f"{image_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}" if image_bin
           else os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(directory), "HOSTNAME": directory.name}
    for entry in container.get("env") or []:
        env[entry["name"]] = _remap(str(entry.get("value") or ""), mounts)
    limit = memory_bytes(((container.get("resources") or {}).get("limits") or {}).get("memory"))
    cgroup = _make_cgroup(state.cgroup_parent, directory.name + "-" + (container.get("name") or "main"), limit)
    with log_path.open("wb") as log:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, cwd=directory, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True, preexec_fn=_confine(cgroup, limit))
        except OSError as exc:
            log.write(f"cannot start {argv[0]!r}: {exc.strerror}\n".encode())
            _drop_cgroup(cgroup)
            return 127, "StartError"
        try:
            code = await proc.wait()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # what it left behind, or all of it when cancelled
    code = 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a container runtime says
    oom = _oom_killed(cgroup) if cgroup else (limit is not None and code != 0 and _says_out_of_memory(log_path))
    _drop_cgroup(cgroup)
    if oom:
        return (code or 137), "OOMKilled"
    return code, "Completed" if code == 0 else "Error"


def _remap(text: str, mounts: dict[str, Path]) -> str:
    for mount in sorted(mounts, key=len, reverse=True):
        text = re.sub(r"(?<![\w.-])" + re.escape(mount) + r"(?=/|\b|$)", str(mounts[mount]), text)
    return text


async def _image_bin(state: KubeState, image: str) -> str | None:
    """The bin directory a python image's commands find first (a venv per image), else None."""
    repository = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    if not repository.startswith("python"):
        return None
    async with state.venv_lock:
        if image not in state.venvs:
            path = state.root / "images" / re.sub(r"[^A-Za-z0-9_.-]", "_", image)
            base = getattr(sys, "_base_executable", sys.executable)
            # no pip of its own (ensurepip takes ~10 s): `pip`/`pip3` run the base Python's pip,
            # which installs into this venv, as an image's own pip installs into the image
            proc = await asyncio.create_subprocess_exec(base, "-m", "venv", "--without-pip", "--system-site-packages",
                                                        str(path), stdout=asyncio.subprocess.DEVNULL,
                                                        stderr=asyncio.subprocess.DEVNULL)
            if await proc.wait() != 0:
                return None
            for pip in ("pip", "pip3"):
                wrapper = path / "bin" / pip
                wrapper.write_text('#!/bin/sh\nexec "$(dirname "$0")/python3" -m pip "$@"\n')
                wrapper.chmod(0o755)
            state.venvs[image] = path
        return str(state.venvs[image] / "bin")


def _make_cgroup(parent: Path | None, name: str, limit: int | None) -> Path | None:
    if parent is None or limit is None:
        return None
    path = parent / f"kube-{name}"
    try:
        path.mkdir()
        (path / "memory.limit_in_bytes").write_text(str(limit))
        with contextlib.suppress(OSError):  # no swap to escape into, where swap accounting exists
            (path / "memory.memsw.limit_in_bytes").write_text(str(limit))
    except OSError:
        with contextlib.suppress(OSError):
            path.rmdir()
        return None
    return path


def _confine(cgroup: Path | None, limit: int | None) -> Any:
    def confine() -> None:  # in the child, before exec
        if cgroup is not None:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))
        elif limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return confine


def _oom_killed(cgroup: Path) -> bool:
    try:
        control = (cgroup / "memory.oom_control").read_text()
    except OSError:
        return False
    counts = dict(line.split(None, 1) for line in control.splitlines() if " " in line)
    return counts.get("oom_kill", "0").strip() != "0"  # the kernel killed something in this group


def _says_out_of_memory(log_path: Path) -> bool:
    tail = log_path.read_text(errors="replace")[-4000:]
    return "MemoryError" in tail or "Cannot allocate memory" in tail or "out of memory" in tail.lower()


def _drop_cgroup(cgroup: Path | None) -> None:
    if cgroup is not None:
        with contextlib.suppress(OSError):
            cgroup.rmdir()


def write_kubeconfig(path: Path, test_api: str) -> Path:
    """A kubeconfig whose cluster is this stand-in (the token is not checked)."""
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "stand-in",
        "clusters": [{"name": "stand-in", "cluster": {"server": f"{test_api.rstrip('/')}{PREFIX}"}}],
        "users": [{"name": "stand-in", "user": {"token": "stand-in"}}],
        "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "stand-in"}}]}))
    return path


def add_routes(app: web.Application) -> None:
    # made when the first pod runs, so an app that runs none leaves nothing behind
    root = Path(os.environ.get("TEST_API_KUBE_DIR") or Path(tempfile.gettempdir()) / f"kube-stand-in-{os.getpid()}")
    app[KUBE] = KubeState(root)

    async def stop_jobs(app: web.Application) -> None:
        for task in app[KUBE].tasks.values():
            task.cancel()

    app.on_cleanup.append(stop_jobs)
    core, batch = f"{PREFIX}/api/v1/namespaces/{{ns}}", f"{PREFIX}/apis/batch/v1/namespaces/{{ns}}"
    app.router.add_post(f"{core}/configmaps", create_config_map)
    app.router.add_delete(f"{core}/configmaps/{{name}}", delete_config_map)
    app.router.add_get(f"{core}/pods", list_pods)
    app.router.add_get(f"{core}/pods/{{name}}", read_pod)
    app.router.add_get(f"{core}/pods/{{name}}/log", pod_log)
    app.router.add_post(f"{batch}/jobs", create_job)
    app.router.add_get(f"{batch}/jobs/{{name}}", read_job)
    app.router.add_get(f"{batch}/jobs/{{name}}/status", read_job)
    app.router.add_delete(f"{batch}/jobs/{{name}}", delete_job)
