"""A fixture's `setup_messages`: what NoETL's drivers (scripts/kind_validate_subscription_*.sh) do
before a subscription playbook runs: create the topic (and the Pub/Sub subscription) and publish
the messages, with the real Kafka client to the local broker, or over Pub/Sub's REST API to the
test API's stand-in."""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp


def encoded(message: Any) -> bytes:
    return (message if isinstance(message, str) else json.dumps(message)).encode()


async def publish(setup: dict[str, Any], *, kafka: str | None, test_api: str | None) -> None:
    source = setup.get("source")
    if source == "kafka":
        await _kafka(setup, kafka)
    elif source == "pubsub":
        await _pubsub(setup, test_api)
    else:
        raise ValueError(f"setup_messages.source must be kafka or pubsub, got {source!r}")


async def _kafka(setup: dict[str, Any], brokers: str | None) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    if not brokers:
        raise RuntimeError("setup_messages for kafka: no broker in this run")
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(setup["topic"], num_partitions=1, replication_factor=1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=brokers)
    await producer.start()
    try:
        for message in setup["messages"]:
            await producer.send_and_wait(setup["topic"], encoded(message))
    finally:
        await producer.stop()


async def _pubsub(setup: dict[str, Any], test_api: str | None) -> None:
    if not test_api:
        raise RuntimeError("setup_messages for pubsub: no test API in this run")
    base = f"{test_api}/pubsub/v1"
    topic, subscription = setup["topic"], setup["subscription"]
    async with aiohttp.ClientSession() as http:
        for url, body in ((f"{base}/{topic}", None), (f"{base}/{subscription}", {"topic": topic})):
            async with http.put(url, json=body) as r:
                if r.status not in (200, 409):  # 409: made by an earlier run of the fixture
                    raise RuntimeError(f"PUT {url}: {r.status} {await r.text()}")
        messages = [{"data": base64.b64encode(encoded(m)).decode()} for m in setup["messages"]]
        async with http.post(f"{base}/{topic}:publish", json={"messages": messages}) as r:
            if r.status != 200:
                raise RuntimeError(f"publish to {topic}: {r.status} {await r.text()}")
