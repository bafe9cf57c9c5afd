"""Pure parts of the container, script and subscription tools and of the Kubernetes stand-in."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from noetl_worker.tools import container_tool, script_job, subscription_tool
from noetl_worker.tools.base import ToolContext, ToolError, json_or_text
from noetl_worker.tools.kube_jobs import dns_name
from tests.support.testapi.kube import _remap, memory_bytes

CTX = ToolContext(credentials=None, execution_id=7, step="s", timeout_seconds=5)  # type: ignore[arg-type]


def test_memory_quantities_in_bytes():
    assert memory_bytes("32Mi") == 32 << 20
    assert memory_bytes("1Gi") == 1 << 30
    assert memory_bytes("512M") == 512 * 10**6
    assert memory_bytes("1000") == 1000
    assert memory_bytes(None) is None
    with pytest.raises(ValueError):
        memory_bytes("lots")


def test_object_names_are_dns_labels():
    assert dns_name("dispatch_container") == "dispatch-container"
    assert dns_name("Script--Run my_JOB!") == "script-run-my-job"
    assert dns_name("!!!") == "noetl-job"
    assert len(dns_name("x" * 100)) == 52


def test_env_in_both_forms_and_bad_entries_named():
    assert container_tool.env_map([{"name": "A", "value": 1}, {"name": "B"}]) == {"A": "1", "B": ""}
    assert container_tool.env_map({"A": None, "B": "x"}) == {"A": "", "B": "x"}
    with pytest.raises(ToolError, match=r"env\[1\]"):
        container_tool.env_map([{"name": "A", "value": "1"}, {"value": "2"}])


async def test_container_config_errors_name_the_field():
    with pytest.raises(ToolError, match="`image`"):
        await container_tool.run({"command": ["true"]}, {}, CTX)
    with pytest.raises(ToolError, match="`command`"):
        await container_tool.run({"image": "alpine"}, {}, CTX)
    with pytest.raises(ToolError, match="`args` must be a list"):
        await container_tool.run({"image": "alpine", "command": ["sh"], "args": {"a": 1}}, {}, CTX)
    with pytest.raises(ToolError, match="`backoff_limit`"):
        await container_tool.run({"image": "alpine", "command": ["true"], "backoff_limit": "x"}, {}, CTX)


def test_script_command_quotes_its_json_args_and_installs_first():
    argv = script_job.command({"input_file": "it's.csv"}, ["google-auth", "requests"])
    assert argv[:2] == ["sh", "-c"]
    words = shlex.split(argv[2])
    assert words[:5] == ["pip3", "install", "--quiet", "google-auth", "requests"]
    assert words[-4:] == ["python3", "-u", "/scripts/script.py", '{"input_file": "it\'s.csv"}']


async def test_script_from_an_object_store_fails_naming_the_backend():
    config = {"script": {"uri": "az://b/x.py", "source": {"type": "azure"}}, "job": {}}
    with pytest.raises(ToolError, match="no azure backend"):
        await script_job.run(config, {}, CTX)


def test_mount_paths_are_rewritten_only_as_whole_path_prefixes():
    mounts = {"/workspace": Path("/tmp/pod/v"), "/scripts": Path("/tmp/pod/s")}
    assert _remap("/bin/bash /workspace/init.sh", mounts) == "/bin/bash /tmp/pod/v/init.sh"
    assert _remap("python3 /scripts/script.py '{}'", mounts) == "python3 /tmp/pod/s/script.py '{}'"
    assert _remap("/data/workspace/x /workspaces", mounts) == "/data/workspace/x /workspaces"


async def test_subscription_bounds_and_sources():
    assert subscription_tool.bounded({"batch": "50"}, "batch", 100, 1000) == 50
    assert subscription_tool.bounded({"batch": 5000}, "batch", 100, 1000) == 1000
    with pytest.raises(ToolError, match="`timeout_ms`"):
        subscription_tool.bounded({"timeout_ms": "soon"}, "timeout_ms", 1000, 5000)
    with pytest.raises(ToolError, match="`source`"):
        await subscription_tool.run({"source": "sqs"}, {}, CTX)
    with pytest.raises(ToolError, match="projects/<project>/subscriptions/<name>"):
        await subscription_tool.run({"source": "pubsub", "subscription": "mysub"}, {}, CTX)
    assert json_or_text(b'{"a": 1}') == {"a": 1} and json_or_text(b"") is None
    assert json_or_text(b"plain") == "plain"
