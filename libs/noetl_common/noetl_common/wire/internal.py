"""Messages between the fleet's own services, each shape defined once and used on both sides.

- Outbox (api-shard <-> outbox-publisher, `/api/internal/outbox/*`): a claim request and answer,
  the rows it carries (`OutboxMessage`), the failure report, the backlog count.
- Command notifications (api-shard -> outbox -> NATS `noetl.commands.<pool>.<execution_id>` ->
  worker): `CommandNotification`. NoETL's own workers read these messages too, so the keys are
  NoETL's.
- Events for the read models (api-shard -> outbox -> NATS `noetl.events.<shard>.<execution_id>`
  -> projector -> api-shard `/api/internal/events/project`): `EventEnvelope`, grouped in
  `Delivery`s, carried by `EventsMessage` on NATS and by `ProjectRequest` to the shard.

- Relayed events (router -> api-shard `/api/internal/events/relay`): single `POST /api/events`
  bodies that reached the router together for one shard, sent on as one request
  (`RelayedEvents`), each answered as it would have been alone (`RelayAnswers`).

The projector's three are generic in the event type: the shard writes and reads `EventEnvelope`s,
while the projector only passes events through and holds them as `msgspec.Raw` (no decode and
re-encode of every event on the way).

Fields that are None or false by default and marked `omit_defaults` are left out of the JSON, so
an absent optional is absent on the wire (not `null`), as the dicts these replace wrote it.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Generic, TypeVar

import msgspec

from . import Id, all_required

# --- outbox ---------------------------------------------------------------------------------------


class OutboxMessage(msgspec.Struct, kw_only=True):
    """One outbox row as a claim answers it. `id` is also its JetStream Nats-Msg-Id."""

    id: int
    execution_id: int | None = None
    subject: str
    # The JSON the shard stored, carried verbatim so the publisher publishes it without decoding
    # and re-encoding it (the shard does not decode it either).
    payload: msgspec.Raw
    headers: dict[str, str] | None = None  # NATS headers (a W3C traceparent)
    attempts: int = 0


class OutboxClaimRequest(msgspec.Struct):
    """Body of POST /api/internal/outbox/claim (optional)."""

    published: list[int] = []  # published since the last claim: deleted before claiming more


class OutboxClaim(msgspec.Struct):
    """Answer of POST /api/internal/outbox/claim: the oldest due rows, oldest first."""

    shard: int
    items: list[OutboxMessage]


class OutboxPublished(msgspec.Struct):
    """Body of POST /api/internal/outbox/mark-published (the publisher's shutdown flush)."""

    ids: list[int]


class OutboxFailure(msgspec.Struct):
    id: int
    error: str = "publish failed"


class OutboxFailed(msgspec.Struct):
    """Body of POST /api/internal/outbox/mark-failed: rows to back off and retry."""

    failures: list[OutboxFailure]


class OutboxMarked(msgspec.Struct):
    """Answer of both mark routes: how many rows were there to mark."""

    marked: int


class OutboxPending(msgspec.Struct, kw_only=True):
    """Answer of GET /api/internal/outbox/pending-count (the publisher's gauges, the router's sum)."""

    pending: int
    retrying: int              # waiting out a publish backoff
    oldest_age_seconds: float  # how long the oldest unpublished row has waited (0 when none)
    shard: int


# --- command notifications ------------------------------------------------------------------------


class CommandNotification(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A command announced to its pool's workers. This shard sends ids as numbers and `command_id`
    as a string; NoETL's Python and Rust servers differ on which ids are strings, and the
    reference worker reads theirs too, so every id is accepted either way."""

    execution_id: int | str
    event_id: int | str          # the command's id (the command.issued event's id)
    command_id: int | str | None = None
    step: str | None = None
    execution_pool: str | None = None
    server_url: str | None = None  # the owning shard, so a worker needs no router; absent: its own setting
    redelivery: bool = False       # re-announced by the shard's reaper (lease expired, or never claimed)


# --- events for the read models -------------------------------------------------------------------

Int4 = Annotated[int, msgspec.Meta(ge=-2**31, le=2**31 - 1)]  # the read models' integer columns


class EventEnvelope(msgspec.Struct, kw_only=True):
    """One logged event as the read models see it. The shard writes ids as strings (as NoETL's
    mirror does); NoETL clients of the project route may send numbers, so both are read. Every
    field is optional here so that the project route names the missing or bad one itself; the
    document states the two ids it refuses to go without (the router routes by execution_id)."""

    __json_schema_extra__: ClassVar[dict[str, Any]] = all_required("event_id", "execution_id")

    event_id: Id | None = None
    execution_id: Id | None = None
    event_type: str | None = None
    parent_execution_id: Id | None = None
    node_name: str | None = None
    status: str | None = None
    command_id: int | str | None = None
    worker_id: str | None = None
    attempt: Int4 | None = None
    iteration: Int4 | None = None
    error: str | None = None
    catalog_id: Id | None = None
    event_time_ms: int | float | None = None  # the event's own time (its id's timestamp or the commit)


E = TypeVar("E")


class Delivery(msgspec.Struct, Generic[E], omit_defaults=True):
    """The events of one shard transaction, named by its outbox row id: marked once by the shard,
    folded whole or not at all. Optional here so the project route names what is missing."""

    id: int | str | None = None
    events: list[E] | None = None


class EventsMessage(msgspec.Struct, Generic[E], omit_defaults=True):
    """What travels on `noetl.events.<shard>.<execution_id>`, in one of three forms:
    - `events`: one shard transaction (the outbox row's payload), named by its Nats-Msg-Id;
    - `deliveries`: rows of one claim packed by the publisher, each named by its row id;
    - `event_id` (and the rest of an envelope): an older message, one bare event named by its id."""

    deliveries: list[Delivery[E]] | None = None
    events: list[E] | None = None
    event_id: int | str | None = None


class ProjectRequest(msgspec.Struct, Generic[E], omit_defaults=True):
    """Body of POST /api/internal/events/project: the projector's `messages`, or NoETL's `events`
    (each event then a delivery of its own, under its event id)."""

    events: list[E] | None = None
    messages: list[Delivery[E]] | None = None


# --- relayed events -------------------------------------------------------------------------------

RELAY_PATH = "/api/internal/events/relay"  # the shard's route; the router's event_relay sends to it
MAX_RELAYED_EVENTS = 64


class RelayedEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    body: msgspec.Raw                # the client's JSON object, as it sent it (the router parsed it)
    traceparent: str | None = None   # its request's span at the router


class RelayedEvents(msgspec.Struct, kw_only=True):
    items: Annotated[list[RelayedEvent], msgspec.Meta(min_length=1, max_length=MAX_RELAYED_EVENTS)]


class RelayAnswer(msgspec.Struct, kw_only=True, omit_defaults=True):
    status: int
    body: msgspec.Raw                # the JSON the event would have been answered alone
    retry_after: str | None = None


class RelayAnswers(msgspec.Struct, kw_only=True):
    items: list[RelayAnswer]         # in the order of the request's items
