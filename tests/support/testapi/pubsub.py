"""A stand-in of Google Pub/Sub's REST API (v1) under /pubsub, as the Pub/Sub emulator serves it:
create a topic (PUT) and a subscription to it (PUT), publish (each subscription gets a copy), pull
and acknowledge. A pulled message not acknowledged within the subscription's ackDeadlineSeconds
(default 10) is delivered again. No auth, like the emulator."""

from __future__ import annotations

import base64
import binascii
import itertools
import time
from typing import Any

from aiohttp import web

PREFIX = "/pubsub"


class Delivery:
    def __init__(self, message: dict[str, Any]) -> None:
        self.message = message
        self.leased_until = 0.0  # pulled and not acknowledged before this moment: not delivered again
        self.ack_id = ""


class PubSubState:
    def __init__(self) -> None:
        self.topics: set[str] = set()
        self.subscriptions: dict[str, dict[str, Any]] = {}  # name -> {topic, ackDeadlineSeconds}
        self.backlog: dict[str, list[Delivery]] = {}  # subscription -> messages not yet acknowledged
        self.ids = itertools.count(1)


PUBSUB = web.AppKey("pubsub", PubSubState)


def error(code: int, status: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, "status": status}}, status=code)


async def _json(request: web.Request) -> dict[str, Any] | web.Response:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        return error(400, "INVALID_ARGUMENT", "body is not JSON")
    return body if isinstance(body, dict) else error(400, "INVALID_ARGUMENT", "body must be a JSON object")


async def create_topic(request: web.Request) -> web.Response:
    state = request.app[PUBSUB]
    name = f"projects/{request.match_info['project']}/topics/{request.match_info['topic']}"
    if name in state.topics:
        return error(409, "ALREADY_EXISTS", "Topic already exists")
    state.topics.add(name)
    return web.json_response({"name": name})


async def create_subscription(request: web.Request) -> web.Response:
    state = request.app[PUBSUB]
    body = await _json(request)
    if isinstance(body, web.Response):
        return body
    name = f"projects/{request.match_info['project']}/subscriptions/{request.match_info['sub']}"
    topic = body.get("topic")
    if topic not in state.topics:
        return error(404, "NOT_FOUND", f"topic: {topic!r} not found")
    if name in state.subscriptions:
        return error(409, "ALREADY_EXISTS", "Subscription already exists")
    deadline = body.get("ackDeadlineSeconds", 10)
    if not isinstance(deadline, int) or not 10 <= deadline <= 600:
        return error(400, "INVALID_ARGUMENT", "ackDeadlineSeconds must be an integer between 10 and 600")
    state.subscriptions[name] = {"name": name, "topic": topic, "ackDeadlineSeconds": deadline}
    state.backlog[name] = []
    return web.json_response(state.subscriptions[name])


async def publish(request: web.Request) -> web.Response:
    state = request.app[PUBSUB]
    topic = f"projects/{request.match_info['project']}/topics/{request.match_info['topic']}"
    if topic not in state.topics:
        return error(404, "NOT_FOUND", f"topic {topic!r} not found")
    body = await _json(request)
    if isinstance(body, web.Response):
        return body
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return error(400, "INVALID_ARGUMENT", "messages: at least one message is required")
    ids = []
    for i, m in enumerate(messages):
        data = m.get("data", "") if isinstance(m, dict) else None
        try:
            base64.b64decode(data or "", validate=True)
        except (binascii.Error, TypeError):
            return error(400, "INVALID_ARGUMENT", f"messages[{i}].data must be base64")
        message = {"data": data, "attributes": m.get("attributes") or {}, "messageId": str(next(state.ids)),
                   "publishTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        ids.append(message["messageId"])
        for name, sub in state.subscriptions.items():
            if sub["topic"] == topic:
                state.backlog[name].append(Delivery(message))
    return web.json_response({"messageIds": ids})


async def pull(request: web.Request) -> web.Response:
    state, name = request.app[PUBSUB], _subscription(request)
    if name not in state.subscriptions:
        return error(404, "NOT_FOUND", f"subscription {name!r} not found")
    body = await _json(request)
    if isinstance(body, web.Response):
        return body
    wanted = body.get("maxMessages")
    if not isinstance(wanted, int) or wanted <= 0:
        return error(400, "INVALID_ARGUMENT", "maxMessages must be a positive integer")
    now = time.monotonic()
    lease = state.subscriptions[name]["ackDeadlineSeconds"]
    out = []
    for delivery in state.backlog[name]:
        if len(out) == wanted:
            break
        if delivery.leased_until <= now:
            delivery.leased_until, delivery.ack_id = now + lease, f"{name}:{delivery.message['messageId']}:{next(state.ids)}"
            out.append({"ackId": delivery.ack_id, "message": delivery.message})
    return web.json_response({"receivedMessages": out} if out else {})


async def acknowledge(request: web.Request) -> web.Response:
    state, name = request.app[PUBSUB], _subscription(request)
    if name not in state.subscriptions:
        return error(404, "NOT_FOUND", f"subscription {name!r} not found")
    body = await _json(request)
    if isinstance(body, web.Response):
        return body
    ack_ids = body.get("ackIds")
    if not isinstance(ack_ids, list) or not ack_ids:
        return error(400, "INVALID_ARGUMENT", "ackIds: at least one ack id is required")
    done = set(ack_ids)
    state.backlog[name] = [d for d in state.backlog[name] if d.ack_id not in done]
    return web.json_response({})


def _subscription(request: web.Request) -> str:
    return f"projects/{request.match_info['project']}/subscriptions/{request.match_info['sub']}"


def add_routes(app: web.Application) -> None:
    app[PUBSUB] = PubSubState()
    base = f"{PREFIX}/v1/projects/{{project}}"
    app.router.add_put(f"{base}/topics/{{topic:[^/:]+}}", create_topic)
    app.router.add_post(f"{base}/topics/{{topic:[^/:]+}}:publish", publish)
    app.router.add_put(f"{base}/subscriptions/{{sub:[^/:]+}}", create_subscription)
    app.router.add_post(f"{base}/subscriptions/{{sub:[^/:]+}}:pull", pull)
    app.router.add_post(f"{base}/subscriptions/{{sub:[^/:]+}}:acknowledge", acknowledge)
