from __future__ import annotations

from typing import Callable, Iterator

import pytest

from .fakes import TOKEN, Cluster, Servers


@pytest.fixture
def fake(tmp_path) -> Iterator[Callable[..., tuple[Cluster, Servers, list[str]]]]:
    """`fake(shards=2, postgres=True, ...)`: the fake cluster and fleet, and the CLI arguments
    that point `noetl_ops --k8s` at them."""
    started: list[Servers] = []

    def make(**kwargs) -> tuple[Cluster, Servers, list[str]]:
        cluster = Cluster(**kwargs)
        servers = Servers(cluster)
        started.append(servers)
        token = tmp_path / "token"
        token.write_text(TOKEN)
        args = ["--k8s", "--namespace", "noetl", "--kubeconfig", servers.kubeconfig(tmp_path / "kubeconfig"),
                "--api", servers.api_url, "--token-file", str(token), "--poll", "0.01"]
        return cluster, servers, args

    yield make
    for servers in started:
        servers.close()
