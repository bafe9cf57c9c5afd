"""NoETL's result store routes (`/api/result/*`, and the legacy `/api/temp/*` alias), on the shard
that owns the execution; the router routes them by the execution id in the path or in the ref.

- `PUT /{execution_id}` `{name, data, scope?, store?, ttl?, source_step?, correlation?, extracted?}`
  -> `{ref, store, scope, expires_at, bytes, sha256}` (the Rust worker's over-budget results)
- `GET /resolve?ref=noetl://execution/<eid>/result/<name>/<id>` -> the stored value itself
- `GET /{execution_id}/list?scope=&step_name=` -> `{execution_id, count, refs: [...]}`
- `GET /{execution_id}/{step_name}?resolve=true` -> the step's latest value (or its ref metadata)
- `DELETE /{execution_id}?scope=execution|workflow` and `DELETE /{execution_id}/step/{step_name}`
  -> `{execution_id, deleted, scope}`
- `GET /stats` -> this shard's counts (the router sums the shards)
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal

import msgspec
from aiohttp import web

from noetl_common.errors import bad_request, json_response, not_found, read_json
from noetl_common.openapi import Op, Param, route
from noetl_common.result_refs import REF_PATTERN, ResultRef, parse_ref

from ...handlers.params import query_bool, query_str
from ...state import ShardServices, services
from ...store import executions as execution_store
from ...store import results as result_store
from ..write.ownership import owned_path_id, require_owned
from .views import iso

SCOPES = ("step", "execution", "workflow", "permanent")
MAX_NAME = 512
_TTL = re.compile(r"^\s*(\d+)\s*([smhdwy]?)\s*$")
_TTL_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
MAX_TTL_SECONDS = 100 * 31536000  # past this an expiry overflows the calendar (a 500): say 'forever'
Scope = Literal["step", "execution", "workflow", "permanent"]
Tier = Literal["memory", "kv", "object", "s3", "gcs", "db", "disk"]
# A ttl as the document states it: seconds (an int: negative is 'forever'), or a string of seconds
# or a count of one unit, small enough to stay within MAX_TTL_SECONDS, or 'forever'. Stated, not
# enforced: ttl_seconds() also takes blanks around and upper case, and answers the 400s.
_TTL_TEXT = (r"^(?:|forever|permanent|-1|[0-9]{1,9}s?|[0-9]{1,7}m|[0-9]{1,5}h|[0-9]{1,4}d|[0-9]{1,3}w"
             r"|[0-9]{1,2}y)$")
Ttl = (Annotated[int, msgspec.Meta(extra_json_schema={"maximum": MAX_TTL_SECONDS})]
       | Annotated[str, msgspec.Meta(extra_json_schema={"pattern": _TTL_TEXT})])


class ResultPutRequest(msgspec.Struct, kw_only=True):
    name: Annotated[str, msgspec.Meta(pattern=r"\S", max_length=MAX_NAME)]
    data: Any
    scope: Scope | None = None          # default execution
    store: Tier | None = None           # NoETL's tiers; kept in the shard database ("db") whatever is asked
    ttl: Ttl | None = None
    source_step: str | None = None
    correlation: dict[str, Any] | None = None
    extracted: dict[str, Any] | None = None
    compress: bool = False          # accepted; values are stored as jsonb either way


class ResultPutResponse(msgspec.Struct, kw_only=True):
    ref: str                          # noetl://execution/<execution_id>/result/<name>/<id>
    store: str
    scope: str
    expires_at: str | None
    bytes: int
    sha256: str


class ResultRefView(msgspec.Struct, kw_only=True):
    ref: str
    store: str
    scope: str
    name: str
    expires_at: str | None
    bytes: int
    sha256: str
    source_step: str | None
    correlation: dict[str, Any] | None
    extracted: dict[str, Any] | None
    created_at: str | None


class ResultPreview(msgspec.Struct):
    text: str | None


class ListedResultRef(ResultRefView, kw_only=True):
    preview: ResultPreview


class ResultList(msgspec.Struct, kw_only=True):
    execution_id: str
    count: int
    refs: list[ListedResultRef]


class ResultsDeleted(msgspec.Struct, kw_only=True):
    execution_id: str
    deleted: int
    scope: str


class ResultStats(msgspec.Struct, kw_only=True):
    """One shard's numbers; the router answers their sums with each shard's body under `shards`."""

    results: int
    bytes: int
    executions: int
    expired: int
    shard_index: int | msgspec.UnsetType = msgspec.UNSET
    shards: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


OWNED = (400, 404, 421)  # a bad id; no such execution (or result); another shard owns the id
SCOPE_QUERY = Param(name="scope", type=Scope, description="default execution")
# A bulk delete takes these two only (permanent results go one by one, step ones by step name).
DELETE_SCOPE_QUERY = Param(name="scope", type=Literal["execution", "workflow"], description="default execution")


def register(app: web.Application) -> None:
    for base in ("/api/result", "/api/temp"):
        legacy = " (legacy alias of /api/result)" if base == "/api/temp" else ""
        # Fixed segments first: aiohttp matches in registration order.
        route(app, "GET", f"{base}/resolve", resolve, Op(
            summary="A stored result's value, by its ref" + legacy, ok=Any, errors=OWNED,
            query=(Param(name="ref", required=True, type=Annotated[str, msgspec.Meta(pattern=REF_PATTERN)],
                         description="noetl://execution/<execution_id>/result/<name>/<id>"),)))
        route(app, "GET", f"{base}/stats", stats, Op(
            summary="Result-store counts (the router sums every shard's)" + legacy, ok=ResultStats))
        route(app, "PUT", f"{base}/{{execution_id}}", put_result, Op(
            summary="Store a result for an execution (kept in the shard database)" + legacy,
            body=ResultPutRequest, ok=ResultPutResponse, errors=(*OWNED, 422)))
        route(app, "DELETE", f"{base}/{{execution_id}}", delete_execution_results, Op(
            summary="Delete an execution's execution- or workflow-scoped results" + legacy, ok=ResultsDeleted,
            errors=OWNED, query=(DELETE_SCOPE_QUERY,)))
        route(app, "GET", f"{base}/{{execution_id}}/list", list_results, Op(
            summary="An execution's stored results (refs with a preview)" + legacy, ok=ResultList, errors=OWNED,
            query=(SCOPE_QUERY, Param(name="step_name"))))
        route(app, "DELETE", f"{base}/{{execution_id}}/step/{{step_name}}", delete_step_results, Op(
            summary="Delete one step's step-scoped results" + legacy, ok=ResultsDeleted, errors=OWNED))
        route(app, "GET", f"{base}/{{execution_id}}/{{step_name}}", get_by_step, Op(
            summary="A step's latest stored result: its value, or with resolve=false its ref" + legacy,
            ok=Any, errors=OWNED, query=(Param(name="resolve", type=bool, description="default true"),)))


async def _owned(request: web.Request) -> tuple[ShardServices, int]:
    svc = services(request)
    execution_id = owned_path_id(request)
    if await execution_store.status(svc.shard_pool, execution_id) is None:
        raise not_found(f"execution {execution_id} not found")
    return svc, execution_id


def ttl_seconds(raw: str | int | None) -> int | None:
    """NoETL's TTL: seconds, or '30m', '1h', '2d', ...; None (no expiry) for 'forever'."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        if raw < 0:
            return None
        return _bounded(raw, raw)
    if str(raw).strip().lower() in ("forever", "permanent", "-1"):
        return None
    match = _TTL.match(str(raw).lower())
    if not match:
        raise bad_request(f"ttl must be seconds or a duration like 30m, 1h, 2d, or 'forever'; got {raw!r}")
    return _bounded(int(match.group(1)) * _TTL_SECONDS[match.group(2)], raw)


def _bounded(seconds: int, raw: str | int) -> int:
    if seconds > MAX_TTL_SECONDS:
        raise bad_request(f"ttl must be at most {MAX_TTL_SECONDS} seconds (100 years) or 'forever'; got {raw!r}")
    return seconds


def _scope(raw: str | None, field: str = "scope") -> str:
    scope = raw or "execution"
    if scope not in SCOPES:
        raise bad_request(f"Invalid {field}: {scope!r}. Use: {', '.join(SCOPES)}")
    return scope


async def put_result(request: web.Request) -> web.Response:
    svc, execution_id = await _owned(request)
    body = await read_json(request, ResultPutRequest)
    name = body.name.strip()  # non-blank and at most MAX_NAME: the Struct says so (msgspec checks it)
    scope = body.scope or "execution"
    ttl = ttl_seconds(body.ttl)
    expires_at = datetime.now(timezone.utc) + timedelta(seconds=ttl) if ttl is not None and scope != "permanent" \
        else None
    size, sha = result_store.measure(body.data)
    stored = result_store.StoredResult(
        result_id=svc.mint_owned_id(), execution_id=execution_id, name=name, data=body.data, bytes=size,
        sha256=sha, scope=scope, source_step=body.source_step, correlation=body.correlation,
        extracted=body.extracted, expires_at=expires_at)
    await result_store.insert(svc.shard_pool, stored)
    return json_response(ResultPutResponse(ref=ResultRef(execution_id, name, stored.result_id).uri(),
                                           store=stored.store, scope=scope, expires_at=iso(expires_at), bytes=size,
                                           sha256=sha))


async def resolve(request: web.Request) -> web.Response:
    svc = services(request)
    raw = query_str(request, "ref")
    if raw is None:
        raise bad_request("query parameter ref is required (noetl://execution/<execution_id>/result/<name>/<id>)")
    try:
        ref = parse_ref(raw)
    except ValueError as exc:
        raise bad_request(f"query parameter ref: {exc}") from None
    require_owned(svc, ref.execution_id)
    row = await result_store.resolve(svc.shard_pool, ref.execution_id, ref.name, ref.result_id)
    if row is None:
        raise not_found(f"result not found: {raw}")
    return json_response(row["data"])


def _ref_fields(row: Any) -> dict[str, Any]:
    return {"ref": ResultRef(row["execution_id"], row["name"], row["result_id"]).uri(), "store": row["store"],
            "scope": row["scope"], "name": row["name"], "expires_at": iso(row["expires_at"]),
            "bytes": row["bytes"], "sha256": row["sha256"], "source_step": row["source_step"],
            "correlation": row["correlation"], "extracted": row["extracted"],
            "created_at": iso(row["created_at"])}


def _ref_view(row: Any) -> ResultRefView:
    return ResultRefView(**_ref_fields(row))


async def list_results(request: web.Request) -> web.Response:
    svc, execution_id = await _owned(request)
    scope = query_str(request, "scope")
    if scope is not None:
        _scope(scope)
    rows = await result_store.listing(svc.shard_pool, execution_id, scope, query_str(request, "step_name"))
    refs = [ListedResultRef(**_ref_fields(r), preview=ResultPreview(text=r["preview"])) for r in rows]
    return json_response(ResultList(execution_id=str(execution_id), count=len(refs), refs=refs))


async def get_by_step(request: web.Request) -> web.Response:
    svc, execution_id = await _owned(request)
    name = request.match_info["step_name"]
    want_data = query_bool(request, "resolve", True)
    row = await result_store.latest(svc.shard_pool, execution_id, name)
    if row is None:
        raise not_found(f"Result not found for step: {name}")
    return json_response(row["data"] if want_data else _ref_view(row))


async def delete_execution_results(request: web.Request) -> web.Response:
    svc, execution_id = await _owned(request)
    scope = _scope(query_str(request, "scope"))
    if scope == "permanent":
        raise bad_request("Cannot bulk-clean 'permanent' scope. Delete individual refs instead.")
    if scope == "step":
        raise bad_request("Step cleanup requires a step name: DELETE /api/result/{execution_id}/step/{step_name}")
    # NoETL's workflow cleanup also takes the execution-scoped results of that run.
    scopes = ["execution", "step"] if scope == "execution" else ["workflow", "execution", "step"]
    deleted = await result_store.delete(svc.shard_pool, [execution_id], scopes)
    return json_response(ResultsDeleted(execution_id=str(execution_id), deleted=deleted, scope=scope))


async def delete_step_results(request: web.Request) -> web.Response:
    svc, execution_id = await _owned(request)
    name = request.match_info["step_name"]
    deleted = await result_store.delete(svc.shard_pool, [execution_id], ["step"], name)
    return json_response(ResultsDeleted(execution_id=str(execution_id), deleted=deleted, scope="step"))


async def stats(request: web.Request) -> web.Response:
    svc = services(request)
    row = await result_store.stats(svc.shard_pool)
    return json_response(ResultStats(results=row["results"], bytes=row["bytes"], executions=row["executions"],
                                     expired=row["expired"], shard_index=svc.settings.shard_index))
