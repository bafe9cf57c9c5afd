"""The container, script and subscription tools through their real clients (the official
`kubernetes` client, aiohttp) against the test API's stand-ins served on a loopback port: the
Kubernetes one runs each Job as a local process, so exit codes, logs, deadlines and OOM kills
are real."""

from __future__ import annotations

import base64
import json

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from noetl_worker.tools import container_tool, script_job, subscription_tool
from noetl_worker.tools.base import ToolContext, ToolError
from tests.support.testapi import build_app
from tests.support.testapi.kube import KUBE, write_kubeconfig

CTX = ToolContext(credentials=None, execution_id=42, step="run_it", timeout_seconds=120)  # type: ignore[arg-type]


@pytest.fixture
async def api(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_API_KUBE_DIR", str(tmp_path / "kube"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    async with TestServer(build_app()) as srv:
        monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", str(srv.make_url("")))))
        yield srv


def leftovers(srv: TestServer) -> tuple[int, int, int]:
    state = srv.app[KUBE]
    return len(state.jobs), len(state.config_maps), len(state.pods)


async def test_a_container_job_runs_and_is_deleted_after(api):
    result = await container_tool.run({"image": "alpine:3.19", "command": ["/bin/sh", "-c"],
                                       "args": ['echo "hello $WHO"; cat /workspace/note.txt'],
                                       "env": [{"name": "WHO", "value": "jobs"}],
                                       "files": {"note.txt": "from a configmap"}}, {}, CTX)
    assert result["status"] == "succeeded" and result["exit_code"] == 0
    assert result["logs"] == "hello jobs\nfrom a configmap"
    assert result["job_name"].startswith("noetl-run-it-")
    assert leftovers(api) == (0, 0, 0)


async def test_a_failing_container_is_retried_to_its_backoff_limit_then_fails_with_its_log(api):
    with pytest.raises(ToolError, match=r"failed: Error \(terminal state failed, exit code 3\): boom") as err:
        await container_tool.run({"image": "busybox", "command": ["sh", "-c", "echo boom; exit 3"],
                                  "backoff_limit": 1}, {}, CTX)
    assert err.value.details["terminal_state"] == "failed" and err.value.details["failed_pods"] == 2
    assert leftovers(api) == (0, 0, 0)


async def test_a_container_past_its_timeout_is_killed(api):
    with pytest.raises(ToolError, match="terminal state failed_deadline"):
        await container_tool.run({"image": "alpine", "command": ["sh", "-c", "echo start; sleep 60"],
                                  "timeout_seconds": 1}, {}, CTX)
    assert leftovers(api) == (0, 0, 0)


async def test_a_container_over_its_memory_limit_is_oom_killed(api):
    code = "b = bytearray(64 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\nprint('survived')"
    with pytest.raises(ToolError, match="OOMKilled") as err:
        await container_tool.run({"image": "python:3.12-alpine", "command": ["python3", "-c", code],
                                  "resources": {"limits": {"memory": "32Mi"}}}, {}, CTX)
    assert err.value.details["terminal_state"] == "failed_oom"
    # the same program under a limit it fits in runs to the end
    result = await container_tool.run({"image": "python:3.12-alpine", "command": ["python3", "-c", code],
                                       "resources": {"limits": {"memory": "256Mi"}}}, {}, CTX)
    assert result["logs"] == "survived\n"


async def test_a_script_job_gets_its_input_as_json_and_reports_noetl_shape(api):
    code = "import json, os, sys\nargs = json.loads(sys.argv[1])\nprint(json.dumps({'got': args, 'env': os.environ['MODE']}))"
    result = await script_job.run({"script": {"uri": "inline", "source": {"type": "inline", "code": code}},
                                   "job": {"image": "python:3.11-slim", "env": {"MODE": "batch"}}},
                                  {"input_file": "it's.csv", "n": 2}, CTX)
    assert result["status"] == "completed" and result["succeeded"] == 1 and result["failed"] == 0
    assert json.loads(result["output"]) == {"got": {"input_file": "it's.csv", "n": 2}, "env": "batch"}
    assert result["kubectl_describe"] == f"kubectl describe job {result['job_name']} -n noetl"
    assert leftovers(api) == (0, 0, 0)


async def test_a_pubsub_drain_takes_and_acks_what_was_published(api):
    base = str(api.make_url("/pubsub/v1"))
    topic, sub = "projects/p/topics/t", "projects/p/subscriptions/s"
    async with aiohttp.ClientSession() as http:
        await http.put(f"{base}/{topic}")
        await http.put(f"{base}/{sub}", json={"topic": topic})
        async with http.post(f"{base}/{topic}:publish", json={"messages": [
                {"data": base64.b64encode(json.dumps({"n": n}).encode()).decode()} for n in range(3)]}) as r:
            assert r.status == 200
    config = {"source": "pubsub", "endpoint": str(api.make_url("/pubsub")), "subscription": sub, "batch": 2,
              "timeout_ms": 500}
    first = await subscription_tool.run(config, {}, CTX)
    assert first["count"] == 2 and first["acked"] and [m["data"] for m in first["messages"]] == [{"n": 0}, {"n": 1}]
    peek = await subscription_tool.run({**config, "ack": "none"}, {}, CTX)
    assert [m["data"] for m in peek["messages"]] == [{"n": 2}] and not peek["acked"]
    # not acknowledged: leased for the ack deadline (10 s), so not delivered again at once
    assert (await subscription_tool.run(config, {}, CTX))["count"] == 0
