"""POST /api/internal/events/project: the projector hands this shard its published events back
to fold into read models (bearer-gated by the internal auth middleware).

Two bodies: the projector's `{"messages": [{"id": <outbox id>, "events": [envelope, ...]}]}`,
one entry per published message, and NoETL's `{"events": [envelope, ...]}`, where each event is
a delivery of its own under its event id. Either way a delivery is folded once, whole.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

import msgspec
from aiohttp import web

from noetl_common.errors import bad_request, json_response
from noetl_common.openapi import Op, route
from noetl_common.streams import PROJECT_MAX_EVENTS
from noetl_common.wire.internal import Delivery, EventEnvelope, ProjectRequest

from ...state import services
from ...store import projections
from ...store.projections import ProjectedEvent
from ..write.ownership import require_owned

MAX_MESSAGES = 1000
MAX_ID = 2**63 - 1  # ids are bigint


# The projector sends the events as they were published; here they are parsed.
ProjectBody = ProjectRequest[EventEnvelope]


class Projected(msgspec.Struct):
    projected: int
    duplicates: int   # events of deliveries folded before


def register(app: web.Application) -> None:
    route(app, "POST", "/api/internal/events/project", project, Op(
        summary="Fold published events into the read models, once per delivery", body=ProjectBody,
        ok=Projected, errors=(400, 421)))


async def project(request: web.Request) -> web.Response:
    svc = services(request)
    deliveries = parse(await _decode(request))
    for execution_id in sorted({e.execution_id for d in deliveries for e in d.events}):
        require_owned(svc, execution_id)
    async with svc.shard_pool.acquire() as conn:
        projected = await projections.fold_batch(conn, deliveries)
    total = sum(len(d.events) for d in deliveries)
    return json_response(Projected(projected=projected, duplicates=total - projected))


async def _decode(request: web.Request) -> ProjectBody:
    raw = await request.read()  # bounded by client_max_size (413 past it)
    try:
        return msgspec.json.decode(raw, type=ProjectBody)
    except msgspec.ValidationError as exc:
        raise bad_request(_field_error(str(exc))) from None
    except msgspec.DecodeError as exc:
        raise bad_request(f"malformed JSON: {exc}") from None


def _field_error(message: str) -> str:
    """msgspec says "Expected `int`, got `str` - at `$.events[0].attempt`"; lead with the field."""
    match = re.fullmatch(r"(.*) - at `\$\.?(.*)`", message, re.DOTALL)
    return f"{match.group(2)}: {match.group(1)}" if match and match.group(2) else message


def parse(body: ProjectBody) -> list[projections.Delivery]:
    """The request's deliveries, or a 400 naming the first offending field."""
    if body.events is not None and body.messages is not None:
        raise bad_request("give either events or messages, not both")
    if body.messages is not None:
        deliveries = [_message(m, f"messages[{i}]") for i, m in enumerate(body.messages)]
        where = "messages"
    else:
        # NoETL's contract: idempotent per event id, so each event is a delivery of its own.
        events = [_event(e, f"events[{i}]") for i, e in enumerate(body.events or [])]
        deliveries = [projections.Delivery(e.event_id, [e]) for e in events]
        where = "events"
    if not deliveries:
        raise bad_request("events (or messages) must be a non-empty list")
    if len(deliveries) > MAX_MESSAGES:
        raise bad_request(f"{where} has {len(deliveries)} items; at most {MAX_MESSAGES} per request")
    total = sum(len(d.events) for d in deliveries)
    if total > PROJECT_MAX_EVENTS:
        raise bad_request(f"{where} carry {total} events; at most {PROJECT_MAX_EVENTS} per request")
    return deliveries


def _message(m: Delivery[EventEnvelope], where: str) -> projections.Delivery:
    delivery_id = _id(m.id, f"{where}.id")
    if not m.events:
        raise bad_request(f"{where}.events must be a non-empty list")
    return projections.Delivery(delivery_id, [_event(e, f"{where}.events[{j}]") for j, e in enumerate(m.events)])


def _event(e: EventEnvelope, where: str) -> ProjectedEvent:
    return ProjectedEvent(
        event_id=_id(e.event_id, f"{where}.event_id"), execution_id=_id(e.execution_id, f"{where}.execution_id"),
        event_type=e.event_type or "", node_name=e.node_name,
        command_id=_optional_id(e.command_id, f"{where}.command_id"), worker_id=e.worker_id,
        attempt=e.attempt, iteration=e.iteration, error=e.error,
        catalog_id=_optional_id(e.catalog_id, f"{where}.catalog_id"), at=_time(e.event_time_ms, where))


def _id(value: int | str | None, where: str) -> int:
    try:
        parsed = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        parsed = 0
    if not 0 < parsed <= MAX_ID:
        raise bad_request(f"{where} must be an integer id")
    return parsed


def _optional_id(value: int | str | None, where: str) -> int | None:
    return None if value in (None, "") else _id(value, where)


def _time(ms: int | float | None, where: str) -> datetime | None:
    """The event's own time, so a lagging projector still records when things happened."""
    if not ms:
        return None
    try:
        return datetime.fromtimestamp(int(ms) / 1000, timezone.utc)
    except (OverflowError, ValueError, OSError):
        raise bad_request(f"{where}.event_time_ms is out of range") from None
