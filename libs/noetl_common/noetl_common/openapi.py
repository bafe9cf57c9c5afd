"""OpenAPI 3.1 from the routes themselves.

A route is registered with its description in one call, `route(app, method, path, handler, Op(...))`,
next to the handler it names. `Op` holds the msgspec types the handler decodes (`body`) and encodes
(`ok`); their JSON Schema comes from `msgspec.json.schema_components`, which speaks JSON Schema
2020-12 as OpenAPI 3.1 does, so the document is the code's own shapes and cannot drift from them.

`document(app)` walks `app.router` (what is really served, not a list kept on the side) and looks
each route up in the descriptions; `undocumented(app)` names the routes that have none, which the
tests turn into a failure.

Constraints a handler enforces belong in the Struct (`Annotated[..., msgspec.Meta(ge=, min_length=,
pattern=)]`: msgspec checks them on decode and states them in the schema). What one field cannot
say, such as "path or catalog_id, one of them", a Struct declares as a class-level JSON Schema
extra, `__json_schema_extra__: ClassVar[dict]` (see `noetl_common.wire.any_of_required`), which
`build` merges into that Struct's component; the handler keeps its own check of it.
"""

from __future__ import annotations

import copy
import importlib.metadata
import re
from http import HTTPStatus
from typing import Annotated, Any, Awaitable, Callable, Iterator

import msgspec
import msgspec.inspect
import msgspec.structs
from aiohttp import hdrs, web

from .auth import INTERNAL_PREFIX, needs_api_token
from .guards import admitted, has_deadline
from .ids import ID_DIGITS, ID_PATTERN

OPENAPI_VERSION = "3.1.0"
REF_TEMPLATE = "#/components/schemas/{name}"
BEARER_SCHEME = "internalBearer"
API_BEARER_SCHEME = "apiBearer"
# aiohttp adds HEAD to every GET on its own; it is the GET operation, not another one. A "*"
# route (the router's catch-all) is kept: it is reported as undocumented unless accounted for.
SKIPPED_METHODS = frozenset({hdrs.METH_HEAD})
PATH_PARAM = re.compile(r"\{([^}/]+)\}")

SCHEMA_EXTRA = "__json_schema_extra__"


# A path segment holding a 64-bit id: the digits parse_id accepts (its 400 covers the rest).
IdSegment = msgspec.json.schema(str) | {"pattern": ID_PATTERN}
# The same as a query parameter's type; a signed one where NoETL takes any i64 (shard-info, preview).
IdParam = Annotated[str, msgspec.Meta(pattern=ID_PATTERN)]
SignedIdParam = Annotated[str, msgspec.Meta(pattern=rf"^\s*-?{ID_DIGITS}\s*$")]


class ErrorBody(msgspec.Struct, omit_defaults=True):
    """Every error answer (noetl_common.errors.ApiError.body); some carry extra keys (e.g. `shard`)."""

    error: str
    status: int
    code: str | None = None
    # FastAPI's shape, which NoETL's own clients read: `{code, message}` (some routes say more).
    detail: dict[str, Any] | None = None


class Param(msgspec.Struct, frozen=True, kw_only=True):
    """A query (or path) parameter; `type` is any type msgspec can describe."""

    name: str
    type: Any = str
    where: str = "query"
    required: bool = False
    description: str = ""


class Op(msgspec.Struct, frozen=True, kw_only=True):
    """What one route takes and answers. `errors` are the statuses it answers with ErrorBody on
    purpose; any other error status is covered by the `default` response, also ErrorBody."""

    summary: str
    body: Any = None                  # the type read_json decodes the request body into
    body_required: bool = True        # False for read_json(..., allow_empty=True)
    ok: Any = None                    # the type the handler encodes; None: no schema for the body
    status: int = 200
    media: str = "application/json"   # of the success body (text/event-stream, text/plain, ...)
    query: tuple[Param, ...] = ()
    path: tuple[Param, ...] = ()      # path parameters with a type other than a plain string or id
    errors: tuple[int, ...] = ()      # beyond the shared ones (401, 429, 503, 504 where they apply: see GUARDS)
    other: tuple[tuple[int, Any], ...] = ()   # more (status, type) answers with a body of their own
    headers: tuple[str, ...] = ()     # response headers of the success answer (e.g. X-Next-Cursor)
    description: str = ""


OPERATIONS = web.AppKey("openapi_operations", dict)  # {(METHOD, canonical path): Op}

DocumentSource = Callable[[web.Request], Awaitable[dict[str, Any]]]


def package_version() -> str:
    try:
        return importlib.metadata.version("noetl-common")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def route(app: web.Application, method: str, path: str, handler: Any, op: Op) -> web.AbstractRoute:
    """Register `handler` and its description in one step (the description is keyed by what aiohttp
    itself resolved, so the two cannot disagree)."""
    registered = app.router.add_route(method, path, handler)
    assert registered.resource is not None  # add_route always makes (or reuses) one
    app.setdefault(OPERATIONS, {})[(registered.method, registered.resource.canonical)] = op
    return registered


def served_routes(app: web.Application) -> Iterator[tuple[str, str]]:
    """(method, canonical path) of every route on the app, in registration order."""
    for resource in app.router.resources():
        for r in resource:
            if r.method not in SKIPPED_METHODS:
                yield r.method, resource.canonical


def undocumented(app: web.Application) -> list[tuple[str, str]]:
    described = app.get(OPERATIONS, {})
    return [key for key in served_routes(app) if key not in described]


def document(app: web.Application, *, title: str, version: str,
             extra: tuple[tuple[str, str, Op], ...] = ()) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every described route the app serves, plus `extra` operations
    (the router's catch-all answers some paths itself)."""
    described = app.get(OPERATIONS, {})
    own = [(m, p, described[(m, p)]) for m, p in served_routes(app) if (m, p) in described]
    return build([*own, *extra], title=title, version=version)


def build(operations: Any, *, title: str, version: str) -> dict[str, Any]:
    ops = list(operations)
    types: list[Any] = [ErrorBody]
    for _, _, op in ops:
        types.extend(t for t in (op.body, op.ok) if t is not None)
        types.extend(p.type for p in (*op.query, *op.path))
        types.extend(t for _, t in op.other)
    refs, components = msgspec.json.schema_components(types, ref_template=REF_TEMPLATE)
    _add_schema_extras(types, components)
    schema_of = dict(zip(map(id, types), refs))
    paths: dict[str, dict[str, Any]] = {}
    for method, path, op in ops:
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, op, schema_of)
    doc: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {"schemas": components},
    }
    schemes: dict[str, Any] = {}
    if any(p.startswith(INTERNAL_PREFIX) for p in paths):
        schemes[BEARER_SCHEME] = {
            "type": "http", "scheme": "bearer",
            "description": "NOETL_INTERNAL_API_TOKEN: service-to-service routes under /api/internal/"}
    if any(needs_api_token(p) for p in paths):
        schemes[API_BEARER_SCHEME] = {
            "type": "http", "scheme": "bearer",
            "description": "NOETL_API_TOKEN (or the internal token), required on every public route but the "
                           "probes, metrics and this documentation when the service is started with it"}
    if schemes:
        doc["components"]["securitySchemes"] = schemes
    return doc


def _add_schema_extras(types: list[Any], components: dict[str, Any]) -> None:
    """Merge each reachable Struct's declared `__json_schema_extra__` into its component."""
    for cls in _structs(types):
        extra = getattr(cls, SCHEMA_EXTRA, None)
        if not extra:
            continue
        fields = {f.encode_name for f in msgspec.structs.fields(cls)}
        named = [name for name, schema in components.items()
                 if schema.get("title") == cls.__name__ and set(schema.get("properties", {})) == fields]
        assert len(named) == 1, f"no single schema component for {cls.__qualname__}: {named}"
        components[named[0]].update(copy.deepcopy(extra))  # the document is the caller's to change


def _structs(types: list[Any]) -> list[type]:
    """Every Struct class the types mention, nested ones included, each once."""
    found: dict[type, None] = {}

    def walk(node: Any) -> None:
        # msgspec.inspect's nodes are Structs themselves: follow every field holding a node.
        if isinstance(node, msgspec.inspect.StructType):
            if node.cls in found:
                return
            found[node.cls] = None
        for name in getattr(node, "__struct_fields__", ()):
            value = getattr(node, name)
            for item in value if isinstance(value, tuple) else (value,):
                if isinstance(item, (msgspec.inspect.Type, msgspec.inspect.Field)):
                    walk(item)

    for info in msgspec.inspect.multi_type_info(types):
        walk(info)
    return list(found)


RETRY_AFTER_HEADER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "string"}}}
# The answers the HTTP shell (and the router) give on any route they apply to, whatever its handler.
GUARDS = {
    401: "NOETL_API_TOKEN is set and the request has no valid bearer token (code unauthorized)",
    429: "over NOETL_MAX_IN_FLIGHT requests in flight (code overloaded); retry after Retry-After",
    503: "the database is unreachable (db_unavailable) or its pool exhausted (pool_saturated), or no shard "
         "can answer (shard_unavailable); retry after Retry-After",
    504: "the request took longer than NOETL_REQUEST_TIMEOUT_SECONDS (code request_timeout)",
}


def guard_statuses(path: str) -> set[int]:
    """Which of GUARDS a path can be answered with: the same predicates the middlewares use."""
    statuses = set()
    if needs_api_token(path):
        statuses.add(401)
    if admitted(path):
        statuses.add(429)
    if path.startswith("/api/"):
        statuses.add(503)     # every /api route reads a database, or a shard behind the router
    if has_deadline(path):
        statuses.add(504)
    return statuses


def _operation(method: str, path: str, op: Op, schema_of: dict[int, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": op.summary, "operationId": _operation_id(method, path),
                           "tags": [_tag(path)]}
    if op.description:
        out["description"] = op.description
    typed = {p.name: p for p in op.path}
    params = [_path_param(name, typed.get(name), schema_of) for name in PATH_PARAM.findall(path)]
    params += [{"name": p.name, "in": p.where, "required": p.required, "schema": schema_of[id(p.type)],
                **({"description": p.description} if p.description else {})} for p in op.query]
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {"required": op.body_required,
                              "content": {"application/json": {"schema": schema_of[id(op.body)]}}}
    ok: dict[str, Any] = {"description": HTTPStatus(op.status).phrase}
    if op.ok is not None:
        ok["content"] = {op.media: {"schema": schema_of[id(op.ok)]}}
    elif op.media != "application/json":
        ok["content"] = {op.media: {}}
    if op.headers:
        ok["headers"] = {h: {"schema": {"type": "string"}} for h in op.headers}
    responses: dict[str, Any] = {str(op.status): ok}
    for status, type_ in op.other:
        responses[str(status)] = {"description": HTTPStatus(status).phrase,
                                  "content": {"application/json": {"schema": schema_of[id(type_)]}}}
    guards = guard_statuses(path)
    errors = set(op.errors) | guards
    internal = path.startswith(INTERNAL_PREFIX)
    if internal:
        out["security"] = [{BEARER_SCHEME: []}]
        errors |= {403, 503}  # wrong or missing token; no token configured on the server
    elif 401 in guards:
        out["security"] = [{API_BEARER_SCHEME: []}, {}]  # {}: open when the service runs without a token
    error = {"content": {"application/json": {"schema": schema_of[id(ErrorBody)]}}}
    for status in sorted(errors - {int(s) for s in responses}):
        answer: dict[str, Any] = {"description": HTTPStatus(status).phrase, **error}
        if status in guards:
            answer["description"] += ": " + GUARDS[status]
        if status in (429, 503):
            answer["headers"] = RETRY_AFTER_HEADER
        responses[str(status)] = answer
    # Malformed input, an outage, the 60 s deadline, a 500: any route may answer these, same body.
    responses["default"] = {"description": "an error: {error, status, code?}", **error}
    out["responses"] = responses
    return out


def _path_param(name: str, param: Param | None, schema_of: dict[int, Any]) -> dict[str, Any]:
    if param is not None:
        schema = schema_of[id(param.type)]
    else:
        schema = IdSegment if name.endswith("id") else {"type": "string"}
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _operation_id(method: str, path: str) -> str:
    return method.lower() + re.sub(r"[^A-Za-z0-9]+", "_", path).rstrip("_")


def _tag(path: str) -> str:
    parts = [p for p in path.split("/") if p and not p.startswith("{")]
    if parts[:1] == ["api"]:
        parts = parts[1:]
    if parts[:1] == ["internal"]:
        return "internal"
    if not path.startswith("/api/"):
        return "service"  # the shell's routes: health, readiness, metrics, this document
    return parts[0]


def merge(own: dict[str, Any], other: dict[str, Any], keep: Callable[[str, str], bool]) -> dict[str, Any]:
    """`own` plus the operations of `other` that `keep(METHOD, path)` accepts; own's win."""
    doc = {**own, "paths": {p: dict(ops) for p, ops in own.get("paths", {}).items()},
           "components": {k: dict(v) for k, v in own.get("components", {}).items()}}
    for path, ops in other.get("paths", {}).items():
        for method, op in ops.items():
            if keep(method.upper(), path) and method not in doc["paths"].get(path, {}):
                doc["paths"].setdefault(path, {})[method] = op
    for kind, entries in other.get("components", {}).items():
        mine = doc["components"].setdefault(kind, {})
        for name, value in entries.items():
            mine.setdefault(name, value)
    return doc
