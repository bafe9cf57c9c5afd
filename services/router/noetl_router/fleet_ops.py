"""Requests every shard must answer, merged into one NoETL answer:

- `POST /api/executions/cleanup`: each shard cancels its own stuck executions (same body to all,
  in parallel); counts add up, ids concatenate. A shard that cannot be reached or refuses is
  named under `failed_shards` (the others have already acted: their work is reported, not
  undone); 503 only when no shard did it. A 4xx (bad body) from any shard is relayed as is.
- `GET /api/result/stats`: every shard's result-store numbers, summed, with the per-shard bodies.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import aiohttp
import msgspec
from aiohttp import web

from noetl_common.errors import ApiError, json_response
from noetl_common.openapi import Op

from .context import RouterContext
from .fanout import UpstreamAnswer
from .forward import SHARD_HEADER, buffered_reply, path_qs
from .upstream import ShardUnavailable, forwardable

# The router reads these answers, so no compression; the body is re-sent whole to each shard.
DROP = frozenset({"host", "content-length", "accept-encoding"})


async def _each(ctx: RouterContext, method: str, path_qs: str, headers: Any, body: bytes | None,
                per_shard: Callable[[int], bytes] | None = None
                ) -> dict[int, tuple[int, bytes | str, web.Response | None]]:
    """(status, body, reply) per listable shard; status 0 and a reason when it could not be asked.
    Each shard gets `body`, or `per_shard(shard)` when given."""

    async def one(shard: int) -> tuple[int, bytes | str, web.Response | None]:
        try:
            sent = per_shard(shard) if per_shard is not None else body
            response = await ctx.up().request(shard, method, path_qs, headers=headers, body=sent)
            raw, reply = await buffered_reply(response, shard)
        except ShardUnavailable as exc:
            return 0, exc.reason, None
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return 0, f"{type(exc).__name__}: {exc}", None
        return response.status, raw, reply

    shards = ctx.listable()
    return dict(zip(shards, await asyncio.gather(*(one(i) for i in shards))))


class FleetCleanupResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    cancelled_count: int
    execution_ids: list[str]
    message: str
    dry_run: bool
    shards: dict[str, int]                    # shard -> how many it cancelled
    results_deleted: int
    failed_shards: dict[str, str] = {}        # shard -> why it could not run the cleanup


class CleanupRequest(msgspec.Struct, kw_only=True):
    """Sent as is to every shard (which validates it)."""

    older_than_minutes: int = 5
    dry_run: bool = False
    limit: int = 1000


class FleetResultStats(msgspec.Struct, kw_only=True):
    """Each shard's numbers summed (a shard that did not answer counts nothing), its body under `shards`."""

    shards: dict[str, dict[str, Any]]
    results: int = 0
    bytes: int = 0
    executions: int = 0
    expired: int = 0


CLEANUP_OP = Op(summary="Cancel stuck executions on every shard (PENDING/RUNNING older than older_than_minutes)",
                body=CleanupRequest, body_required=False, ok=FleetCleanupResponse, errors=(400, 422, 503),
                headers=(SHARD_HEADER,),
                description="Shards that could not run it are named under failed_shards; 503 when none could.")
RESULT_STATS_OP = Op(summary="Result-store counts of every shard, summed", ok=FleetResultStats)


def _relay_client_error(answers: dict[int, tuple[int, Any, web.Response | None]]) -> None:
    """A shard refusing the request itself (400/422) refuses it for all: pass that on."""
    for status, _, reply in answers.values():
        if 400 <= status < 500 and reply is not None:
            raise UpstreamAnswer(reply)


async def cleanup(request: web.Request, ctx: RouterContext) -> web.Response:
    body = await request.read()
    answers = await _each(ctx, "POST", path_qs(request), forwardable(request.headers, drop=DROP), body or None)
    _relay_client_error(answers)
    cancelled: list[str] = []
    per_shard: dict[str, int] = {}
    failed: dict[str, str] = {}
    dry_run = False
    results_deleted = 0
    for shard, (status, raw, _) in answers.items():
        try:
            if status != 200:
                raise ValueError(raw if status == 0 else f"shard answered {status}: {raw[:300]!r}")
            part = msgspec.json.decode(raw)
            ids = [str(i) for i in part["execution_ids"]]
        except (ValueError, KeyError, TypeError, msgspec.DecodeError) as exc:
            failed[str(shard)] = str(exc)[:300]
            continue
        dry_run = dry_run or bool(part.get("dry_run"))
        results_deleted += int(part.get("results_deleted") or 0)
        cancelled.extend(ids)
        per_shard[str(shard)] = len(ids)
    if not per_shard:
        raise ApiError(503, "no shard could run the cleanup", "shard_unavailable", failed_shards=failed,
                       headers={"Retry-After": "1"})
    verb = "[DRY RUN] Would cancel" if dry_run else "Cancelled"
    message = f"{verb} {len(cancelled)} stuck executions on {len(per_shard)} of {len(answers)} shards"
    answer = FleetCleanupResponse(cancelled_count=len(cancelled), execution_ids=cancelled, message=message,
                                  dry_run=dry_run, shards=per_shard, results_deleted=results_deleted,
                                  failed_shards=failed)
    return json_response(answer, headers={SHARD_HEADER: ",".join(per_shard)})


async def result_stats(request: web.Request, ctx: RouterContext) -> web.Response:
    answers = await _each(ctx, "GET", path_qs(request), forwardable(request.headers, drop=DROP), None)
    _relay_client_error(answers)
    totals: dict[str, float] = {}
    shards: dict[str, Any] = {}
    for shard, (status, raw, _) in answers.items():
        if status != 200:
            shards[str(shard)] = {"status": "unavailable", "error": raw if status == 0 else f"answered {status}"}
            continue
        part = msgspec.json.decode(raw)
        shards[str(shard)] = part
        for key, value in part.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "shard_index":
                totals[key] = totals.get(key, 0) + value
    return json_response({**totals, "shards": shards})
