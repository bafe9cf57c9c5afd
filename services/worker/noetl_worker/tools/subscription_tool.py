"""`kind: subscription`, `operation: poll`: a bounded drain of a message source. Up to `batch`
messages (at most 1000) are taken within `timeout_ms` (at most 5000), acknowledged when
`ack: on_success` (the default; `ack: none` leaves them to come again), and returned as
`{source, count, messages: [{id, data, ...}], acked}` for the playbook to loop over. `data` is the
payload parsed as JSON when it is JSON, else its text.

Sources, with the connection named by `auth` (a credential whose data is merged under the config):
- `kafka`: `brokers` (host:port, comma-separated), `topic`, `group`: a consumer-group poll from the
  group's committed offsets (the earliest for a new group); acking commits the offsets. Plaintext.
- `pubsub`: `subscription` (projects/P/subscriptions/S) pulled over Pub/Sub's REST API at
  `endpoint` (a plain http endpoint or host:port is an emulator: no auth; else `token` or
  `access_token` is sent as a bearer token); acking acknowledges the pulled ack ids."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import aiohttp

from .base import ToolContext, ToolError, json_or_text

MAX_BATCH = 1000
MAX_TIMEOUT_MS = 5000
PUBSUB_API = "https://pubsub.googleapis.com"


def bounded(config: dict[str, Any], field: str, default: int, limit: int) -> int:
    value = config.get(field, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ToolError(f"subscription `{field}` must be a whole number, got {value!r}") from None
    if number < 0:
        raise ToolError(f"subscription `{field}` must not be negative, got {number}")
    return min(number, limit)




async def settings(config: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """The config with the `auth` credential's data under it (the config's own keys win)."""
    auth = config.get("auth")
    if not auth:
        return config
    if isinstance(auth, dict):
        return {**auth, **config}
    try:
        credential = await ctx.credentials.get_credential(str(auth))
    except Exception as exc:
        raise ToolError(f"subscription credential {auth!r} could not be resolved: {exc}") from None
    data = credential.get("data") if isinstance(credential, dict) else None
    if not isinstance(data, dict):
        raise ToolError(f"subscription credential {auth!r} has no data")
    return {**data, **{k: v for k, v in config.items() if k != "auth"}}


async def run(config: dict[str, Any], inputs: dict[str, Any], ctx: ToolContext) -> Any:
    operation = str(config.get("operation") or "poll")
    if operation != "poll":
        raise ToolError(f"subscription `operation` {operation!r} is not supported (poll is)")
    source = str(config.get("source") or "").lower()
    if source not in SOURCES:
        raise ToolError(f"subscription `source` must be one of {', '.join(sorted(SOURCES))}, got {source!r}")
    ack = str(config.get("ack") or "on_success").lower()
    if ack not in ("on_success", "none", "never", "manual"):
        raise ToolError(f"subscription `ack` must be on_success or none, got {ack!r}")
    batch = bounded(config, "batch", 100, MAX_BATCH)
    timeout_ms = bounded(config, "timeout_ms", 1000, MAX_TIMEOUT_MS)
    messages, acked = await SOURCES[source](await settings(config, ctx), batch, timeout_ms, ack == "on_success")
    return {"source": source, "count": len(messages), "messages": messages, "acked": acked}


async def kafka_poll(config: dict[str, Any], batch: int, timeout_ms: int, ack: bool) -> tuple[list, bool]:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.errors import KafkaError

    brokers = config.get("brokers") or config.get("bootstrap_servers")
    if isinstance(brokers, list):
        brokers = ",".join(str(b) for b in brokers)
    topic, group = config.get("topic"), config.get("group") or config.get("group_id")
    for field, value in (("brokers", brokers), ("topic", topic), ("group", group)):
        if not value:
            raise ToolError(f"kafka subscription needs `{field}`")
    consumer = AIOKafkaConsumer(str(topic), bootstrap_servers=str(brokers), group_id=str(group),
                                enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        await consumer.start()
        records: list = []
        deadline = asyncio.get_running_loop().time() + timeout_ms / 1000
        # the first fetches may come before the group has its partitions: poll until the deadline
        while not records and batch:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            got = await consumer.getmany(timeout_ms=int(left * 1000), max_records=batch)
            records = [r for partition in got.values() for r in partition]
        acked = False
        if records and ack:
            await consumer.commit()
            acked = True
    except KafkaError as exc:
        raise ToolError(f"kafka subscription on {topic!r} at {brokers}: {type(exc).__name__}: {exc}") from None
    finally:
        await consumer.stop()
    return [{"id": f"{r.topic}:{r.partition}:{r.offset}", "data": json_or_text(r.value),
             "key": r.key.decode("utf-8", errors="replace") if r.key is not None else None,
             "topic": r.topic, "partition": r.partition, "offset": r.offset, "timestamp": r.timestamp}
            for r in records], acked


async def pubsub_poll(config: dict[str, Any], batch: int, timeout_ms: int, ack: bool) -> tuple[list, bool]:
    subscription = str(config.get("subscription") or "")
    if not subscription.startswith("projects/") or "/subscriptions/" not in subscription:
        raise ToolError("pubsub subscription needs `subscription` as projects/<project>/subscriptions/<name>, "
                        f"got {subscription!r}")
    endpoint = str(config.get("endpoint") or PUBSUB_API).rstrip("/")
    if "://" not in endpoint:
        endpoint = f"http://{endpoint}"  # host:port: an emulator
    headers = {}
    token = config.get("token") or config.get("access_token")
    if token and not endpoint.startswith("http://"):
        headers["Authorization"] = f"Bearer {token}"
    url = f"{endpoint}/v1/{subscription}"
    timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000 + 10)
    try:
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as http:
            received: list = []
            deadline = asyncio.get_running_loop().time() + timeout_ms / 1000
            while batch and not received and asyncio.get_running_loop().time() < deadline:
                async with http.post(f"{url}:pull", json={"maxMessages": batch}) as resp:
                    body = await resp.json(content_type=None)
                    if resp.status != 200:
                        raise ToolError(f"pubsub pull {subscription}: {resp.status} {str(body)[:300]}")
                received = body.get("receivedMessages") or []
                if not received:
                    await asyncio.sleep(0.2)
            acked = False
            if received and ack:
                async with http.post(f"{url}:acknowledge", json={"ackIds": [m["ackId"] for m in received]}) as resp:
                    if resp.status != 200:
                        raise ToolError(f"pubsub acknowledge {subscription}: {resp.status} {await resp.text()}")
                acked = True
    except aiohttp.ClientError as exc:
        raise ToolError(f"pubsub subscription {subscription} at {endpoint}: {type(exc).__name__}: {exc}") from None
    messages = []
    for m in received:
        message = m.get("message") or {}
        raw = base64.b64decode(message["data"]) if message.get("data") else None
        messages.append({"id": message.get("messageId"), "data": json_or_text(raw),
                         "attributes": message.get("attributes") or {}, "publish_time": message.get("publishTime"),
                         "ack_id": m.get("ackId")})
    return messages, acked


SOURCES = {"kafka": kafka_poll, "pubsub": pubsub_poll}
