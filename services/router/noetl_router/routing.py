"""Which shard(s) a request goes to: a pure function of method, path, query, headers and (for the
few body-routed paths) the body. No I/O, no shard map: ids are returned, the caller resolves them.

Precedence: X-Execution-ID header > execution id in the path (or replay query) > event/command id
in the path > execution_id in a JSON body > cluster-wide handling. An id that is present but
unparsable is a RoutingError (400), never a guess.
"""

from __future__ import annotations

import enum
import re
from typing import Any, Mapping

import msgspec

from noetl_common.ids import parse_id
from noetl_common.result_refs import parse_ref

EXECUTION_HEADER = "X-Execution-ID"

# Paths whose shard is named by the body; only these are buffered before routing.
BODY_ROUTED = frozenset({"/api/events", "/api/events/batch", "/api/internal/events/project"})
# SQL names its database in the body (target, shard): buffered too, to route by it.
SQL_PATH = "/api/postgres/execute"
DB_SCHEMA_PATHS = frozenset({"/api/db/validate", "/api/db/init"})
DASHBOARD_STATS_PATH = "/api/dashboard/stats"
# Path prefixes whose next segment is an execution id.
EXECUTION_PATH_PREFIXES = ("/api/executions/", "/api/vars/")
COMMAND_PATH_PREFIX = "/api/commands/"
# NoETL's frames routes: a stage's or a frame's id, minted by the shard that owns its execution.
FRAME_PATH_PREFIXES = (("/api/stages/", "stage_id"), ("/api/frames/", "frame_id"))
# NoETL's result store (and its legacy alias): the next segment is an execution id, except these.
RESULT_PREFIXES = ("/api/result/", "/api/temp/")
RESULT_RESOLVE = frozenset({"/api/result/resolve", "/api/temp/resolve"})
RESULT_STATS = frozenset({"/api/result/stats", "/api/temp/stats"})
# GET /api/events/batch/{request_id}/status|stream: the request id is minted by the owning shard.
BATCH_REQUEST_PREFIX = "/api/events/batch/"
CLEANUP_PATH = "/api/executions/cleanup"
EXECUTE_PATHS = frozenset({"/api/execute", "/api/execute/batch"})


class Kind(enum.Enum):
    OWNER = "owner"              # the shard owning `ids` (all must agree)
    PLACE = "place"              # a new execution: any healthy shard, round robin
    ANY = "any"                  # cluster-wide data: any one healthy shard
    LIST_EXECUTIONS = "list"     # fan out to every shard and merge
    PENDING_COUNT = "pending"    # fan out and sum
    PREVIEW = "preview"          # answered by the router itself
    CLEANUP = "cleanup"          # fan out the same request to every shard, merge the answers
    RESULT_STATS = "result_stats"  # fan out and sum
    SHARD = "shard"              # the shard numbered ids[0] (named by the caller, not hashed)
    SQL_ALL = "sql_all"          # SQL run on every shard, rows concatenated
    DB_SCHEMA = "db_schema"      # every shard checks or migrates its databases; answers merged
    DASHBOARD_STATS = "dashboard_stats"  # fan out, sum the execution counts
    PER_SHARD = "per_shard"      # shard-local internals with no id: cannot be routed


class Rule(enum.Enum):
    HEADER = "header"
    PATH = "path"
    QUERY = "query"
    EVENT_ID = "event_id"
    BODY = "body"
    CLUSTER = "cluster"


class Decision(msgspec.Struct, frozen=True):
    kind: Kind
    rule: Rule = Rule.CLUSTER
    ids: tuple[int, ...] = ()
    field: str = ""              # what the ids are, for logs and error messages


class RoutingError(Exception):
    """A request carries an id the router cannot parse or lacks one it needs (HTTP 400)."""


def needs_body(method: str, path: str, headers: Mapping[str, str]) -> bool:
    """Whether `decide` must see the body: only when no header decides first."""
    if method == "POST" and _norm(path) == SQL_PATH:
        return True
    return method == "POST" and _norm(path) in BODY_ROUTED and not headers.get(EXECUTION_HEADER)


def decide(method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str],
           body: bytes | None = None) -> Decision:
    path = _norm(path)
    if path == SQL_PATH and method == "POST":
        return sql_target(body)
    if path in DB_SCHEMA_PATHS:
        return Decision(Kind.DB_SCHEMA)
    if path == DASHBOARD_STATS_PATH and method in ("GET", "HEAD"):
        return Decision(Kind.DASHBOARD_STATS)
    header = headers.get(EXECUTION_HEADER)
    if header is not None:
        return Decision(Kind.OWNER, Rule.HEADER, (_parse(header, f"{EXECUTION_HEADER} header"),), "execution_id")

    if path == CLEANUP_PATH and method == "POST":
        return Decision(Kind.CLEANUP)
    for prefix in EXECUTION_PATH_PREFIXES:
        if path.startswith(prefix):
            segment = path[len(prefix):].split("/", 1)[0]
            return Decision(Kind.OWNER, Rule.PATH, (_parse(segment, f"execution id in path {path!r}"),),
                            "execution_id")
    if path == "/api/replay/state":
        raw = query.get("execution_id")
        if raw is None:
            raise RoutingError("query parameter execution_id is required")
        return Decision(Kind.OWNER, Rule.QUERY, (_parse(raw, "query parameter execution_id"),), "execution_id")
    if path.startswith(COMMAND_PATH_PREFIX):
        segment = path[len(COMMAND_PATH_PREFIX):].split("/", 1)[0]
        # Ids are shard-affine: a command's event id hashes to the shard that minted it.
        return Decision(Kind.OWNER, Rule.EVENT_ID, (_parse(segment, f"event id in path {path!r}"),), "event_id")
    for prefix, field in FRAME_PATH_PREFIXES:
        if path.startswith(prefix):
            segment = path[len(prefix):].split("/", 1)[0]
            return Decision(Kind.OWNER, Rule.EVENT_ID, (_parse(segment, f"{field} in path {path!r}"),), field)

    if path in RESULT_STATS:
        return Decision(Kind.RESULT_STATS)
    if path in RESULT_RESOLVE:
        raw = query.get("ref")
        if not raw:
            raise RoutingError("query parameter ref is required (noetl://execution/<execution_id>/result/...)")
        try:
            ref = parse_ref(raw)
        except ValueError as exc:
            raise RoutingError(f"query parameter ref: {exc}") from None
        return Decision(Kind.OWNER, Rule.QUERY, (ref.execution_id,), "execution_id")
    for prefix in RESULT_PREFIXES:
        if path.startswith(prefix):
            segment = path[len(prefix):].split("/", 1)[0]
            return Decision(Kind.OWNER, Rule.PATH, (_parse(segment, f"execution id in path {path!r}"),),
                            "execution_id")
    if path.startswith(BATCH_REQUEST_PREFIX) and method != "POST":
        segment = path[len(BATCH_REQUEST_PREFIX):].split("/", 1)[0]
        # Shard-affine like event ids: the request id hashes to the shard that accepted the batch.
        return Decision(Kind.OWNER, Rule.EVENT_ID, (_parse(segment, f"request id in path {path!r}"),), "request_id")

    if method == "POST" and path in BODY_ROUTED:
        return Decision(Kind.OWNER, Rule.BODY, body_execution_ids(body), "execution_id")

    if path in EXECUTE_PATHS:
        return Decision(Kind.PLACE)
    if path == "/api/executions" and method in ("GET", "HEAD"):
        return Decision(Kind.LIST_EXECUTIONS)
    if path == "/api/internal/outbox/pending-count" and method == "GET":
        return Decision(Kind.PENDING_COUNT)
    if path == "/sharding/preview":
        return Decision(Kind.PREVIEW)
    if path.startswith("/api/internal/outbox/"):
        return Decision(Kind.PER_SHARD)
    # Catalog, credentials, keychain, worker pools, shard map, shard-info: any shard can answer.
    return Decision(Kind.ANY)


class _SqlTarget(msgspec.Struct):
    target: str = "cluster"
    shard: Any = None


def sql_target(body: bytes | None) -> Decision:
    """target shard (with `shard`): that shard; all_shards: every shard; anything else (cluster,
    or a body the shard will refuse, naming the problem): any shard."""
    try:
        wanted = msgspec.json.decode(body or b"{}", type=_SqlTarget)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return Decision(Kind.ANY)
    if wanted.target == "all_shards":
        return Decision(Kind.SQL_ALL)
    if wanted.target != "shard":
        return Decision(Kind.ANY)
    if isinstance(wanted.shard, bool) or not isinstance(wanted.shard, int) or wanted.shard < 0:
        raise RoutingError("shard (a shard number, 0 or more) is required with target \"shard\"")
    return Decision(Kind.SHARD, Rule.BODY, (wanted.shard,), "shard")


_TEMPLATE_PARAM = re.compile(r"\{[^}/]+\}")
# Stand-ins that let `decide` judge a route template: a parseable id everywhere one is read.
_SAMPLE_QUERY = {"execution_id": "1"}
_SAMPLE_BODY = b'{"execution_id": 1}'


def proxied(method: str, template: str) -> bool:
    """Whether the router forwards a shard route (`{params}` in its path) to some shard: all but
    the shard-local internals (PER_SHARD), which carry no id to route by."""
    path = _TEMPLATE_PARAM.sub("1", template)
    try:
        decision = decide(method, path, _SAMPLE_QUERY, {}, _SAMPLE_BODY)
    except RoutingError:
        return True  # routed, only not with the stand-ins: still a route the router serves
    return decision.kind is not Kind.PER_SHARD


def body_execution_ids(body: bytes | None) -> tuple[int, ...]:
    """Top-level `execution_id`; for a projector batch without one, each event's execution_id
    (`events[i]`, or `messages[i].events[j]`)."""
    if not body or not body.strip():
        raise RoutingError("request body is empty; a JSON object with execution_id is expected")
    try:
        doc = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise RoutingError(f"malformed JSON body: {exc}") from None
    if not isinstance(doc, dict):
        raise RoutingError("request body must be a JSON object with execution_id")
    if doc.get("execution_id") is not None:
        return (_parse(doc["execution_id"], "execution_id in the body"),)
    events = _body_events(doc)
    if events:
        ids = []
        for where, event in events:
            value = event.get("execution_id") if isinstance(event, dict) else None
            if value is None:
                raise RoutingError(f"{where}.execution_id is required to route this request")
            ids.append(_parse(value, f"{where}.execution_id"))
        return tuple(dict.fromkeys(ids))
    raise RoutingError("execution_id is required in the body to route this request")


def _body_events(doc: dict[str, Any]) -> list[tuple[str, Any]]:
    """A project body's events, each with where it sits (for errors)."""
    events = doc.get("events")
    if isinstance(events, list):
        return [(f"events[{i}]", e) for i, e in enumerate(events)]
    messages = doc.get("messages")
    if not isinstance(messages, list):
        return []
    found: list[tuple[str, Any]] = []
    for i, message in enumerate(messages):
        inner = message.get("events") if isinstance(message, dict) else None
        if not isinstance(inner, list) or not inner:
            raise RoutingError(f"messages[{i}].events must be a non-empty list to route this request")
        found.extend((f"messages[{i}].events[{j}]", e) for j, e in enumerate(inner))
    return found


def _parse(value: Any, field: str) -> int:
    try:
        return parse_id(value, field)
    except ValueError as exc:
        raise RoutingError(str(exc)) from None


def _norm(path: str) -> str:
    # "/api/events/" and "/api/events" are the same route to a client; trailing slashes never carry ids.
    return path.rstrip("/") or "/"
