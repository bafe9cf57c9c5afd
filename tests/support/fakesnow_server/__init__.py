"""fakesnow's server (Snowflake's REST protocol over one shared in-memory DuckDB) as a process of
its own, for the snowflake tool's tests and the cloud conformance index: Snowflake's own Python
connector reaches it with host/port/protocol, like any Snowflake account."""

from __future__ import annotations

import msgspec

from noetl_devstack.ports import free_port
from noetl_devstack.processes import ServiceSpec, Supervisor

NAME = "fakesnow"


class FakeSnowflake(msgspec.Struct, frozen=True):
    host: str
    port: int

    def credential(self) -> dict[str, object]:
        """A snowflake credential's data for this server (any user and password sign in)."""
        return {"account": "fakesnow", "user": "fake", "password": "snow", "host": self.host, "port": self.port,
                "protocol": "http", "warehouse": "COMPUTE_WH", "database": "TEST_DB", "schema": "PUBLIC"}


async def start(supervisor: Supervisor) -> FakeSnowflake:
    spec = ServiceSpec(name=NAME, module="tests.support.fakesnow_server", port=free_port(), ready_path="/healthz")
    supervisor.spawn(spec)
    await supervisor.wait_ready(NAME)
    return FakeSnowflake(host="127.0.0.1", port=spec.port)
