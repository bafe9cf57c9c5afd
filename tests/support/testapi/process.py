"""Start the test API as a process of its own (what the suite, the conformance runner and
`make test-api` use): the fleet's workers call it over real HTTP like any other server."""

from __future__ import annotations

from noetl_devstack.ports import free_port
from noetl_devstack.processes import ServiceSpec, Supervisor

NAME = "test-api"


async def start_test_api(supervisor: Supervisor, static_dir: str | None = None) -> str:
    env = {"TEST_API_STATIC_DIR": static_dir} if static_dir else {}
    spec = ServiceSpec(name=NAME, module="tests.support.testapi", port=free_port(), ready_path="/healthz", env=env)
    supervisor.spawn(spec)
    await supervisor.wait_ready(NAME)
    return spec.url
