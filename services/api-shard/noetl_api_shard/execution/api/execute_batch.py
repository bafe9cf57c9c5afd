"""`POST /api/execute/batch` (the Rust server's shape): N independent executions in one request,
each exactly as `POST /api/execute` would start it. A bad item is an `error` result at its index;
the others still start. All of them live on the shard that received the request (it mints ids
it owns), so the router's round robin spreads batches, not items."""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from noetl_common.errors import ApiError, json_response, read_json
from noetl_common.wire.execution import ExecuteRequest

from ...state import services
from ..keys import ORCHESTRATOR
from ..write.starting import start_request

MAX_BATCH_ITEMS = 1000  # the Rust server's cap; more is refused, never truncated


class BatchExecuteRequest(msgspec.Struct, kw_only=True):
    executions: Annotated[list[ExecuteRequest], msgspec.Meta(min_length=1, max_length=MAX_BATCH_ITEMS)]


class BatchItemResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    index: int
    status: str                       # started | error
    commands_generated: int = 0
    execution_id: str | None = None
    error: str | None = None
    code: int | None = None           # the HTTP status the item would have had alone


class BatchExecuteResponse(msgspec.Struct, kw_only=True):
    count: int
    started: int
    duplicates: int
    failed: int
    results: list[BatchItemResult]


async def execute_batch(request: web.Request) -> web.Response:
    body = await read_json(request, BatchExecuteRequest)
    count = len(body.executions)  # 1..MAX_BATCH_ITEMS: the Struct says so (msgspec checks it)
    svc, orch = services(request), request.app[ORCHESTRATOR]
    results: list[BatchItemResult] = []
    for index, item in enumerate(body.executions):
        try:
            started = await start_request(svc, orch, item)
        except ApiError as exc:
            results.append(BatchItemResult(index=index, status="error", error=exc.message, code=exc.status))
            continue
        results.append(BatchItemResult(index=index, status="started", execution_id=started.execution_id,
                                       commands_generated=started.commands_generated))
    failed = sum(1 for r in results if r.status == "error")
    return json_response(BatchExecuteResponse(count=count, started=count - failed, duplicates=0, failed=failed,
                                              results=results))
