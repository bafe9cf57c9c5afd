"""NoETL's gateway, for what its auth playbooks call on it (gateway.gateway.svc.cluster.local in
NoETL's cluster): `POST /api/internal/callback` and `/callback/async`, where a playbook reports
its answer for a gateway request. Served under `/gateway` (a playbook's `gateway_url` points
there). As the gateway does, a body needs a `request_id` (else 422) and is answered
`{"status": "delivered"}`; every callback is kept, and `GET /gateway/_callbacks/<request_id>`
lists the ones a request got (what tests check)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from aiohttp import web

CALLBACKS = web.AppKey("gateway_callbacks", defaultdict)


async def callback(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": "body must be JSON"}, status=400)
    if not isinstance(body, dict) or not isinstance(body.get("request_id"), str) or not body["request_id"]:
        return web.json_response({"error": "missing field `request_id`"}, status=422)
    kept: defaultdict[str, list[dict[str, Any]]] = request.app[CALLBACKS]
    kept[body["request_id"]].append({"path": request.path, **body})
    return web.json_response({"status": "delivered"})


async def callbacks_of(request: web.Request) -> web.Response:
    return web.json_response(request.app[CALLBACKS].get(request.match_info["request_id"], []))


def add_routes(app: web.Application) -> None:
    app[CALLBACKS] = defaultdict(list)
    app.router.add_post("/gateway/api/internal/callback", callback)
    app.router.add_post("/gateway/api/internal/callback/async", callback)
    app.router.add_get("/gateway/_callbacks/{request_id}", callbacks_of)
