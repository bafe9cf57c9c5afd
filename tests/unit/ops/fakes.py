"""Stand-ins for what `noetl_ops` talks to, run in threads inside the test (no cluster here):

- `FakeKube`: the Kubernetes API calls the CLI makes through the official client - read and
  patch a StatefulSet's scale, list pods by label, GET a pod's /metrics through the pod proxy. A
  simulated kubelet turns a new pod Ready on the `ready_after`-th list that sees it, and removes a
  pod of a scaled-down StatefulSet on the list after the one that showed it terminating, so waits
  progress by being polled, never by time.
- `FakeFleet`: the router's shard-map, epoch and status routes with the contract's bodies, routing
  status by X-Execution-ID like the router. A shard registers once its pod is Ready; a draining
  shard finishes one running execution per status call.

Both append to one `Cluster.log`, so tests assert the order of patches and commits."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from noetl_common.sharding import Epoch, ShardMap

TOKEN = "test-internal-token"
NS = "noetl"


class Cluster:
    def __init__(self, *, shards: int, postgres: bool, epochs: list[int] | None = None,
                 ready_after: int = 2) -> None:
        self.lock = threading.Lock()
        self.log: list[tuple[Any, ...]] = []
        self.replicas: dict[str, int] = {"api-shard": shards, **({"postgres-shard": shards} if postgres else {})}
        self.replicas["projector"] = 1
        # pod name -> lists seen while not ready (ready at ready_after); present pods start ready.
        self.pods: dict[str, int] = {f"{s}-{i}": ready_after for s, n in self.replicas.items() for i in range(n)}
        self.terminating: set[str] = set()
        self.ready_after = ready_after
        self.broken: dict[str, str] = {}          # pod name -> waiting reason (never Ready)
        self.epochs = [Epoch(0, n) for n in (epochs or [shards])]
        if len(self.epochs) > 1:                  # history: spread the later epochs over the past
            base = int(time.time() * 1000) - 60_000
            self.epochs = [Epoch(0, self.epochs[0].shard_count)] + [
                Epoch(base + k * 1000, e.shard_count) for k, e in enumerate(self.epochs[1:], 1)]
        self.running: dict[int, int] = {}         # shard -> running executions
        self.lag: dict[int, float] = {}

    def shard_map(self) -> ShardMap:
        return ShardMap(epochs=tuple(self.epochs))

    def ready(self, pod: str) -> bool:
        return pod in self.pods and pod not in self.broken and pod not in self.terminating \
            and self.pods[pod] >= self.ready_after

    # -- Kubernetes ---------------------------------------------------------------------------
    def scale(self, sts: str, replicas: int) -> None:
        before = self.replicas[sts]
        self.replicas[sts] = replicas
        self.log.append(("patch", sts, replicas))
        for i in range(before, replicas):
            self.pods.setdefault(f"{sts}-{i}", 0)
            self.terminating.discard(f"{sts}-{i}")
        for i in range(replicas, before):
            self.terminating.add(f"{sts}-{i}")

    def list_pods(self, name: str) -> list[dict[str, Any]]:
        self.log.append(("list", name))
        out = []
        for pod in sorted(p for p in self.pods if p.rsplit("-", 1)[0] == name):
            out.append(self._pod(pod))
            if pod in self.terminating:
                del self.pods[pod]            # shown terminating once, then gone
                self.terminating.discard(pod)
            elif pod not in self.broken:
                self.pods[pod] += 1           # the kubelet moves on between two looks
        return out

    def _pod(self, pod: str) -> dict[str, Any]:
        ready = self.ready(pod)
        waiting = self.broken.get(pod)
        state = {"waiting": {"reason": waiting}} if waiting else ({"running": {}} if ready else
                                                                  {"waiting": {"reason": "ContainerCreating"}})
        meta: dict[str, Any] = {"name": pod, "namespace": NS,
                                "labels": {"app.kubernetes.io/name": pod.rsplit("-", 1)[0]}}
        if pod in self.terminating:
            meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        return {"metadata": meta, "status": {
            "phase": "Running" if ready else "Pending",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"name": "c", "image": "noetl-fleet:dev", "imageID": "", "ready": ready,
                                   "restartCount": 3 if waiting else 0, "state": state,
                                   **({"lastState": {"terminated": {"exitCode": 1, "message": "no DSN for shard"}}}
                                      if waiting else {})}]}}

    # -- fleet --------------------------------------------------------------------------------
    def registered(self) -> list[dict[str, Any]]:
        count = self.replicas["api-shard"]
        return [{"index": i, "url": f"http://api-shard-{i}.api-shard:8082",
                 "draining": i >= self.epochs[-1].shard_count}
                for i in range(count) if self.ready(f"api-shard-{i}")]

    def commit(self, count: int, grace_ms: int) -> None:
        ready = tuple(i for i in range(count) if self.ready(f"api-shard-{i}"))
        self.log.append(("commit", count, ready))
        if self.epochs[-1].shard_count != count:
            now = int(time.time() * 1000)
            self.epochs.append(Epoch(max(now + grace_ms, self.epochs[-1].effective_from_ms + 1), count))

    def status(self, shard: int) -> dict[str, Any]:
        m = self.shard_map()
        now = int(time.time() * 1000)
        in_force = [e for e in self.epochs if e.effective_from_ms <= now][-1]
        pending = next((e for e in self.epochs if e.effective_from_ms > now), None)
        draining = shard >= in_force.shard_count
        if draining and self.running.get(shard, 0) > 0:
            self.running[shard] -= 1          # a draining shard finishes its executions
        running = self.running.get(shard, 0)
        return {"shard": shard, "epoch": _epoch(in_force), "pending_epoch": _epoch(pending) if pending else None,
                "shard_count_now": m.count_at(now), "draining": draining, "running_executions": running,
                "total_executions": 10 + running, "outbox_pending": 0, "drained": draining and running == 0}

    def metrics(self) -> str:
        lines = ["# TYPE noetl_projector_lag_events gauge"]
        lines += [f'noetl_projector_lag_events{{shard="{i}"}} {v}' for i, v in sorted(self.lag.items())]
        return "\n".join(lines) + "\n"


def _epoch(e: Epoch) -> dict[str, int]:
    return {"effective_from_ms": e.effective_from_ms, "shard_count": e.shard_count}


class _Handler(BaseHTTPRequestHandler):
    cluster: Cluster

    def log_message(self, *_args: Any) -> None:
        pass

    def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"null")


class _KubeHandler(_Handler):
    def do_GET(self) -> None:
        url = urlparse(self.path)
        parts = url.path.strip("/").split("/")
        with self.cluster.lock:
            if url.path.endswith("/scale"):                 # apis/apps/v1/namespaces/ns/statefulsets/x/scale
                sts = parts[-2]
                if sts not in self.cluster.replicas:
                    return self._send(404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404})
                return self._send(200, _scale(sts, self.cluster.replicas[sts]))
            if url.path.endswith("/pods"):
                selector = parse_qs(url.query).get("labelSelector", [""])[0]
                items = self.cluster.list_pods(selector.split("=", 1)[1])
                return self._send(200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items})
            if "/proxy/" in url.path:                        # api/v1/namespaces/ns/pods/name:port/proxy/metrics
                self.cluster.log.append(("proxy", unquote(parts[-3])))
                return self._send(200, self.cluster.metrics(), "text/plain")
        self._send(404, {"kind": "Status", "code": 404})

    def do_PATCH(self) -> None:
        url = urlparse(self.path)
        sts = url.path.strip("/").split("/")[-2]
        body = self._body()
        with self.cluster.lock:
            self.cluster.scale(sts, body["spec"]["replicas"])
            return self._send(200, _scale(sts, self.cluster.replicas[sts]))


def _scale(sts: str, replicas: int) -> dict[str, Any]:
    return {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": sts, "namespace": NS},
            "spec": {"replicas": replicas}, "status": {"replicas": replicas}}


class _FleetHandler(_Handler):
    def _authorized(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._send(403, {"error": "forbidden", "status": 403})
            return False
        return True

    def do_GET(self) -> None:
        url = urlparse(self.path)
        with self.cluster.lock:
            if url.path == "/api/shard-map":
                return self._send(200, {"epochs": [_epoch(e) for e in self.cluster.epochs],
                                        "shards": self.cluster.registered()})
            if url.path == "/api/internal/shard/status":
                if not self._authorized():
                    return None
                shard = self.cluster.shard_map().owner(int(self.headers["X-Execution-ID"]))
                return self._send(200, self.cluster.status(shard))
        self._send(404, {"error": "not found", "status": 404})

    def do_POST(self) -> None:
        if urlparse(self.path).path != "/api/internal/shard-map/epochs":
            return self._send(404, {"error": "not found", "status": 404})
        if not self._authorized():
            return None
        body = self._body()
        with self.cluster.lock:
            self.cluster.commit(body["shard_count"], body.get("grace_ms", 10_000))
            newest = self.cluster.epochs[-1]
            return self._send(200, {"epochs": [_epoch(e) for e in self.cluster.epochs],
                                    "effective_from_ms": newest.effective_from_ms,
                                    "shard_count": newest.shard_count})


class Servers:
    """Both fakes on free loopback ports, served from daemon threads until `close()`."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._servers = []
        for base in (_KubeHandler, _FleetHandler):
            handler = type(base.__name__, (base,), {"cluster": cluster})
            server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self._servers.append(server)
        self.kube_url = f"http://127.0.0.1:{self._servers[0].server_port}"
        self.api_url = f"http://127.0.0.1:{self._servers[1].server_port}"

    def kubeconfig(self, path: Any) -> str:
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.kube_url}}],
            "users": [{"name": "fake", "user": {"token": "kube-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": NS}}]}))
        return str(path)

    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
