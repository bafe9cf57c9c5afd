"""Bad input and unreachable things: one line on stderr, a non-zero exit, never a traceback.
Run as the operator runs it (`python -m noetl_ops`), in a directory with no `make run`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .fakes import TOKEN


def run_cli(*args: str, cwd, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "noetl_ops", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.mark.parametrize("count", ["0", "-2"])
def test_shard_count_below_one(tmp_path, count):
    assert "--shards must be at least 1" in one_line_error(run_cli("scale", "--shards", count, cwd=tmp_path))


def test_no_router_known(tmp_path):
    line = one_line_error(run_cli("status", cwd=tmp_path, env_extra={"NOETL_INTERNAL_API_TOKEN": TOKEN}))
    assert "no router URL" in line and "make run" in line


def test_missing_token(tmp_path):
    line = one_line_error(run_cli("status", "--api", "http://127.0.0.1:9", cwd=tmp_path))
    assert "no internal API token" in line and "NOETL_INTERNAL_API_TOKEN" in line


def test_unreachable_router(tmp_path):
    line = one_line_error(run_cli("status", "--api", "http://127.0.0.1:9", cwd=tmp_path,
                                  env_extra={"NOETL_INTERNAL_API_TOKEN": TOKEN}))
    assert "cannot reach http://127.0.0.1:9/api/shard-map" in line


def test_wrong_token_is_named(fake, tmp_path):
    _, servers, _ = fake(shards=2, postgres=False)
    line = one_line_error(run_cli("scale", "--shards", "2", "--api", servers.api_url, "--k8s",
                                  "--kubeconfig", servers.kubeconfig(tmp_path / "kc"), cwd=tmp_path,
                                  env_extra={"NOETL_INTERNAL_API_TOKEN": "wrong"}))
    assert "refused the internal token (403)" in line


def test_unreachable_kubernetes_api(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "x", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "x", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}]}))
    line = one_line_error(run_cli("status", "--k8s", "--kubeconfig", str(kubeconfig), "--api", "http://127.0.0.1:9",
                                  cwd=tmp_path, env_extra={"NOETL_INTERNAL_API_TOKEN": TOKEN}))
    assert "cannot reach" in line


def test_local_scale_without_make_run(tmp_path):
    line = one_line_error(run_cli("scale", "--shards", "3", "--api", "http://127.0.0.1:9", cwd=tmp_path,
                                  env_extra={"NOETL_INTERNAL_API_TOKEN": TOKEN}))
    assert "make run" in line and "--k8s" in line


def test_stale_run_file(tmp_path):
    data = tmp_path / ".data"
    data.mkdir()
    (data / "run.json").write_text(json.dumps({"pid": 2 ** 22 + 12345, "router": "http://127.0.0.1:9",
                                               "projector": "http://127.0.0.1:9", "control": "http://127.0.0.1:9",
                                               "data_dir": str(data)}))
    line = one_line_error(run_cli("scale", "--shards", "3", cwd=tmp_path, env_extra={"NOETL_INTERNAL_API_TOKEN": TOKEN}))
    assert "no longer running" in line
