"""Start the test API as a process of its own (what the suite, the conformance runner and
`make test-api` use): the fleet's workers call it over real HTTP like any other server."""

from __future__ import annotations

from pathlib import Path

import msgspec

from noetl_devstack.ports import free_port
from noetl_devstack.processes import ServiceSpec, Supervisor

from .tls import write_self_signed

NAME = "test-api"


class TestApi(msgspec.Struct, frozen=True):
    url: str  # http://127.0.0.1:<port>
    tls_host: str | None = None  # 127.0.0.1:<port> of the HTTPS side
    ca_file: str | None = None  # its certificate, for SSL_CERT_FILE of whoever calls it
    proxy: str | None = None  # http://127.0.0.1:<port>: HTTPS_PROXY standing in for `proxy_hosts`


async def start_test_api(supervisor: Supervisor, static_dir: str | None = None) -> str:
    return (await start(supervisor, static_dir)).url


async def start(supervisor: Supervisor, static_dir: str | None = None, tls_dir: Path | None = None,
                proxy_hosts: tuple[str, ...] = (), kube_dir: Path | None = None) -> TestApi:
    """With `tls_dir`, also serve HTTPS with a self-signed certificate written there; with
    `proxy_hosts` as well, an HTTPS proxy answering for those public hosts. `kube_dir`: where the
    Kubernetes stand-in keeps its pods and image venvs (default: a new temporary directory)."""
    env = {"TEST_API_STATIC_DIR": static_dir} if static_dir else {}
    if kube_dir is not None:
        env["TEST_API_KUBE_DIR"] = str(kube_dir)
    tls_host = ca_file = proxy_url = None
    if tls_dir is not None:
        cert, key = write_self_signed(tls_dir, proxy_hosts)
        tls_port = free_port()
        env.update(TEST_API_TLS_PORT=str(tls_port), TEST_API_TLS_CERT=str(cert), TEST_API_TLS_KEY=str(key))
        tls_host, ca_file = f"127.0.0.1:{tls_port}", str(cert)
        if proxy_hosts:
            proxy_port = free_port()
            env.update(TEST_API_PROXY_PORT=str(proxy_port), TEST_API_PROXY_HOSTS=",".join(proxy_hosts))
            proxy_url = f"http://127.0.0.1:{proxy_port}"
    spec = ServiceSpec(name=NAME, module="tests.support.testapi", port=free_port(), ready_path="/healthz", env=env)
    supervisor.spawn(spec)
    await supervisor.wait_ready(NAME)
    return TestApi(url=spec.url, tls_host=tls_host, ca_file=ca_file, proxy=proxy_url)
