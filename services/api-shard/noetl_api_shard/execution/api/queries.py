"""Read side of executions: list, detail, status, events, cancellation check, variables."""

from __future__ import annotations

import asyncio
import base64
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from aiohttp import web

from noetl_common.errors import bad_request, json_response, not_found, read_json
from noetl_common.openapi import IdParam, Op, Param, route
from noetl_common.wire.execution_views import (CancellationCheck, EventPage, EventPagination, ExecutionDetail,
                                               ExecutionStatus, ListedExecution, SetVarsRequest, VarDeleted, VarList,
                                               VarOne, VarsDeleted, VarsSet, VarValue)

from ...handlers.params import query_bool, query_int, query_str, to_id
from ...state import ShardServices, services
from ...store import commands as command_store
from ...store import events as event_store
from ...store import executions as execution_store
from ...store import variables as variable_store
from ..write import engine_port as engine
from ..write.ownership import owned_path_id
from .views import entry_fields, event_view, listed_entry, status_view

DEFAULT_PAGE = 100
MAX_PAGE = 500
MAX_OFFSET = 1_000_000  # page/offset read the skipped rows; past this, page by since_event_id
STATUSES = ("PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED")


PageSize = Annotated[int, msgspec.Meta(ge=1, le=MAX_PAGE)]
LIST_QUERY = (Param(name="limit", type=PageSize), Param(name="page_size", type=PageSize),
              Param(name="status", type=Literal[STATUSES], description="case-insensitive"),
              Param(name="path"), Param(name="parent_execution_id", type=IdParam),
              Param(name="cursor", description="X-Next-Cursor of the previous page"))
EVENT_PAGE_QUERY = (Param(name="page", type=Annotated[int, msgspec.Meta(ge=1)], description="1-based"),
                    Param(name="page_size", type=PageSize),
                    Param(name="offset", type=Annotated[int, msgspec.Meta(ge=0, le=MAX_OFFSET)],
                          description="instead of page"),
                    Param(name="limit", type=PageSize, description="instead of page_size"),
                    Param(name="since_event_id", type=IdParam, description="only events after this one (NoETL)"),
                    Param(name="before_event_id", type=IdParam,
                          description="only events before this one: the next_before_event_id of the previous "
                                      "page (pages by key; not with page or offset)"),
                    Param(name="event_type"))
OWNED = (404, 421)  # no such execution; another shard owns the id


def register(app: web.Application) -> None:
    route(app, "GET", "/api/executions", list_executions, Op(
        summary="List executions, newest first", ok=list[ListedExecution], query=LIST_QUERY, errors=(400,),
        headers=("X-Next-Cursor",)))
    route(app, "GET", "/api/executions/{execution_id}", get_execution, Op(
        summary="One execution with a page of its events", ok=ExecutionDetail, errors=(400, *OWNED),
        query=(Param(name="include_events", type=bool), *EVENT_PAGE_QUERY)))
    route(app, "GET", "/api/executions/{execution_id}/status", get_status, Op(
        summary="Engine status of an execution", ok=ExecutionStatus, errors=OWNED,
        query=(Param(name="steps", type=bool, description="add each step's result, the context, issue counts"),)))
    route(app, "GET", "/api/executions/{execution_id}/events", get_events, Op(
        summary="A page of an execution's events", ok=EventPage, errors=(400, *OWNED), query=EVENT_PAGE_QUERY))
    route(app, "GET", "/api/executions/{execution_id}/cancellation-check", cancellation_check, Op(
        summary="Whether an execution was cancelled (for workers)", ok=CancellationCheck, errors=OWNED))
    route(app, "GET", "/api/vars/{execution_id}", list_vars, Op(
        summary="An execution's variables", ok=VarList, errors=OWNED))
    route(app, "POST", "/api/vars/{execution_id}", set_vars, Op(
        summary="Set execution variables", body=SetVarsRequest, ok=VarsSet, errors=(*OWNED, 400, 422)))
    route(app, "DELETE", "/api/vars/{execution_id}", delete_vars, Op(
        summary="Delete all of an execution's variables", ok=VarsDeleted, errors=OWNED))
    route(app, "GET", "/api/vars/{execution_id}/{name}", get_var, Op(
        summary="One execution variable", ok=VarOne, errors=OWNED))
    route(app, "DELETE", "/api/vars/{execution_id}/{name}", delete_var, Op(
        summary="Delete one execution variable", ok=VarDeleted, errors=OWNED))


def encode_cursor(created_at: datetime, execution_id: int) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode([created_at.isoformat(), execution_id])).decode()


def decode_cursor(raw: str) -> tuple[datetime, int]:
    try:
        ts, eid = msgspec.json.decode(base64.urlsafe_b64decode(raw.encode()))
        return datetime.fromisoformat(ts), int(eid)
    except Exception:
        raise bad_request("query parameter cursor is not a cursor this API issued") from None


async def _owned_execution(request: web.Request) -> tuple[ShardServices, Any]:
    svc = services(request)
    execution_id = owned_path_id(request)
    row = await execution_store.get(svc.shard_pool, execution_id)
    if row is None:
        raise not_found(f"execution {execution_id} not found")
    return svc, row


async def list_executions(request: web.Request) -> web.Response:
    """Newest first; NoETL's body (a JSON list) with keyset pagination in `X-Next-Cursor`."""
    svc = services(request)
    limit = query_int(request, "limit", 0, 1, MAX_PAGE) or query_int(request, "page_size", DEFAULT_PAGE, 1, MAX_PAGE)
    status = query_str(request, "status")
    if status is not None and status.upper() not in STATUSES:
        raise bad_request(f"query parameter status must be one of {', '.join(STATUSES)}, got {status!r}")
    cursor = query_str(request, "cursor")
    before = decode_cursor(cursor) if cursor else None
    parent_raw = query_str(request, "parent_execution_id")
    parent = to_id(parent_raw, "parent_execution_id") if parent_raw else None
    rows = await execution_store.page(svc.shard_pool, status=status.upper() if status else None,
                                      path=query_str(request, "path"), parent=parent, before=before,
                                      limit=limit + 1)
    headers = {}
    if len(rows) > limit:
        rows = rows[:limit]
        headers["X-Next-Cursor"] = encode_cursor(rows[-1]["created_at"], rows[-1]["execution_id"])
    return json_response([listed_entry(r) for r in rows], headers=headers)


async def get_execution(request: web.Request) -> web.Response:
    svc, row = await _owned_execution(request)
    endpoint = f"/api/executions/{row['execution_id']}/events"
    if query_bool(request, "include_events", True):
        events, pagination = await _event_page(request, svc, row["execution_id"])
        return json_response(ExecutionDetail(**entry_fields(row), events=events, events_included=True,
                                             pagination=pagination, events_endpoint=endpoint))
    return json_response(ExecutionDetail(**entry_fields(row), events_included=False, events_endpoint=endpoint))


async def _event_page(request: web.Request, svc: ShardServices, execution_id: int) -> tuple[list, EventPagination]:
    """Newest first, as NoETL: page/page_size (or offset/limit) with its totals, optionally only
    the events after `since_event_id` (NoETL's incremental poll). `before_event_id` pages by key
    toward older events instead (then `page` is where that key falls)."""
    page_size = _page_size(request)
    since = query_str(request, "since_event_id") or query_str(request, "after")
    since_id = to_id(since, "since_event_id") if since else None
    before = query_str(request, "before_event_id")
    before_id = to_id(before, "before_event_id") if before else None
    event_type = query_str(request, "event_type")
    offset = _offset(request, page_size)
    if before_id is not None and offset:
        raise bad_request("before_event_id pages by key; it cannot be combined with page or offset")
    rows, total = await asyncio.gather(
        event_store.page(svc.shard_pool, execution_id, since_event_id=since_id, before_event_id=before_id,
                         limit=page_size + 1, event_type=event_type, offset=offset),
        event_store.count(svc.shard_pool, execution_id, event_type, since_event_id=since_id))
    has_next = len(rows) > page_size
    rows = rows[:page_size]
    if before_id is not None:
        offset = await event_store.count(svc.shard_pool, execution_id, event_type, since_event_id=since_id,
                                         from_event_id=before_id)
    pagination = EventPagination(page=offset // page_size + 1, page_size=page_size, offset=offset,
                                 total_events=total, total_pages=max(1, -(-total // page_size)),
                                 has_next=has_next, has_prev=offset > 0,
                                 next_before_event_id=str(rows[-1]["event_id"]) if has_next and rows else None)
    return [event_view(r) for r in rows], pagination


def _page_size(request: web.Request) -> int:
    if query_str(request, "limit") is not None:
        return query_int(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    return query_int(request, "page_size", DEFAULT_PAGE, 1, MAX_PAGE)


def _offset(request: web.Request, page_size: int) -> int:
    if query_str(request, "offset") is not None:
        if query_str(request, "page") is not None:
            raise bad_request("give page or offset, not both")
        return query_int(request, "offset", 0, 0, MAX_OFFSET)
    page = query_int(request, "page", 1, 1, MAX_OFFSET // page_size + 1)
    return (page - 1) * page_size


async def get_events(request: web.Request) -> web.Response:
    svc, row = await _owned_execution(request)
    events, pagination = await _event_page(request, svc, row["execution_id"])
    return json_response(EventPage(execution_id=str(row["execution_id"]), path=row["path"], status=row["status"],
                                   events=events, pagination=pagination))


async def get_status(request: web.Request) -> web.Response:
    svc, row = await _owned_execution(request)
    cmds = await command_store.list_for_execution(svc.shard_pool, row["execution_id"])
    variables = {r["name"]: r["value"] for r in await variable_store.list_all(svc.shard_pool, row["execution_id"])}
    body = status_view(row, cmds, variables)
    if query_bool(request, "steps", False):
        # Each step's final result (loop steps: {results, stats}), the context and issue counts.
        engine_row = await execution_store.engine_row(svc.shard_pool, row["execution_id"])
        body.steps = await execution_store.step_results(svc.shard_pool, row["execution_id"])
        body.context = engine.decode_state(engine_row["state"]).vars if engine_row and engine_row["state"] else {}
        issued: dict[str, int] = {}
        for cmd in cmds:
            issued[cmd["step"]] = issued.get(cmd["step"], 0) + 1
        body.issued = issued
    return json_response(body)


async def cancellation_check(request: web.Request) -> web.Response:
    _, row = await _owned_execution(request)
    status = row["status"]
    return json_response(CancellationCheck(
        execution_id=str(row["execution_id"]), status=status, event_type=row["last_event_type"],
        cancelled=status == "CANCELLED", is_cancelled=status == "CANCELLED", completed=status == "COMPLETED",
        failed=status == "FAILED"))


def _var_fields(row: Any) -> dict[str, Any]:
    return dict(value=row["value"], type=row["var_type"], source_step=row["source_step"],
                created_at=row["created_at"].isoformat(),
                accessed_at=row["accessed_at"].isoformat() if row["accessed_at"] else None,
                access_count=row["access_count"])


async def list_vars(request: web.Request) -> web.Response:
    svc, row = await _owned_execution(request)
    rows = await variable_store.list_all(svc.shard_pool, row["execution_id"])
    return json_response(VarList(execution_id=row["execution_id"],
                                 variables={r["name"]: VarValue(**_var_fields(r)) for r in rows}, count=len(rows)))


async def get_var(request: web.Request) -> web.Response:
    svc, row = await _owned_execution(request)
    name = request.match_info["name"]
    var = await variable_store.get_one(svc.shard_pool, row["execution_id"], name)
    if var is None:
        raise not_found(f"variable {name!r} not found for execution {row['execution_id']}")
    return json_response(VarOne(execution_id=row["execution_id"], var_name=name, **_var_fields(var)))


async def set_vars(request: web.Request) -> web.Response:
    svc, row = await _owned_execution(request)
    body = await read_json(request, SetVarsRequest)
    # var_type one of VAR_TYPES, at least one variable: SetVarsRequest says so (msgspec checks it).
    await variable_store.upsert_many(svc.shard_pool, row["execution_id"], body.variables, body.var_type,
                                     body.source_step)
    return json_response(VarsSet(execution_id=row["execution_id"], variables_set=len(body.variables),
                                 var_names=sorted(body.variables)))


async def delete_var(request: web.Request) -> web.Response:
    svc, row = await _owned_execution(request)
    name = request.match_info["name"]
    deleted = await variable_store.delete_one(svc.shard_pool, row["execution_id"], name)
    if not deleted:
        raise not_found(f"variable {name!r} not found for execution {row['execution_id']}")
    return json_response(VarDeleted(execution_id=row["execution_id"], var_name=name, deleted=True))


async def delete_vars(request: web.Request) -> web.Response:
    svc, row = await _owned_execution(request)
    count = await variable_store.delete_all(svc.shard_pool, row["execution_id"])
    return json_response(VarsDeleted(execution_id=row["execution_id"], deleted_count=count))
