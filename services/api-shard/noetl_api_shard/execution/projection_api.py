"""POST /api/internal/events/project: the projector hands this shard its published events back
to fold into read models (bearer-gated by the internal auth middleware)."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from noetl_common.errors import bad_request, json_response, read_json

from ..state import services
from ..store import projections
from .ownership import require_owned

MAX_EVENTS = 1000


class ProjectRequest(msgspec.Struct):
    events: list[dict[str, Any]]


def register(app: web.Application) -> None:
    app.router.add_post("/api/internal/events/project", project)


async def project(request: web.Request) -> web.Response:
    svc = services(request)
    body = await read_json(request, ProjectRequest)
    if not body.events:
        raise bad_request("events must be a non-empty list")
    if len(body.events) > MAX_EVENTS:
        raise bad_request(f"events has {len(body.events)} items; at most {MAX_EVENTS} per request")
    for i, e in enumerate(body.events):
        for field in ("event_id", "execution_id"):
            try:
                int(e.get(field))
            except (TypeError, ValueError):
                raise bad_request(f"events[{i}].{field} must be an integer id") from None
        require_owned(svc, int(e["execution_id"]))
    async with svc.shard_pool.acquire() as conn, conn.transaction():
        projected = await projections.fold_batch(conn, body.events)
    return json_response({"projected": projected, "duplicates": len(body.events) - projected})
