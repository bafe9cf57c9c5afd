"""JSON errors: `{"error": <message>, "status": <code>, "code"?: <machine code>,
"detail": {"code", "message"}}`: `detail` is FastAPI's shape, which NoETL's own clients read
(its worker takes a claim's 409 as `detail.code`: `active_claim`, `already_terminal`).

Handlers raise ApiError; the middleware turns it (and body-size / decode problems) into JSON.
Unexpected exceptions become a 500 whose body says nothing about internals (the log has it).
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import asyncpg
import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from .db.pool import PoolSaturated

T = TypeVar("T")

RETRY_AFTER = {"Retry-After": "2"}
# Postgres down, restarting or unreachable (a refused or reset connection, one closed under us, a
# server shutting down): the request may succeed when retried, so it is a 503, not a 500. A pooled
# connection the server terminated (a Postgres restart) can be handed out before asyncpg sees it
# closed; using it raises InternalClientError ("cannot switch to state ..; another operation is in
# progress") before anything is sent, so that too is a 503 to retry.
DB_UNAVAILABLE = (ConnectionError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                  asyncpg.CannotConnectNowError, asyncpg.AdminShutdownError, asyncpg.CrashShutdownError,
                  asyncpg.InternalClientError)
# A statement the database gave up on though the request may be fine: cancelled (statement_timeout,
# an operator's pg_cancel_backend), a lock it could not get in time, a deadlock it broke. The change
# was rolled back whole; the same request can succeed a moment later.
DB_GAVE_UP = (asyncpg.QueryCanceledError, asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError)

# Text Postgres cannot store: U+0000 in text or jsonb (SQLSTATE 22P05, 22021). It came in a
# request, which is then the client's to fix (a 422), not a server fault (a 500).
UNSTORABLE_TEXT = (asyncpg.UntranslatableCharacterError, asyncpg.CharacterNotInRepertoireError)
# Any other value Postgres cannot take (SQLSTATE class 22: a number out of its column's range, a
# date past the calendar, ...; also a query argument asyncpg cannot encode, e.g. an int past int4).
# Handlers bound what they read; this is the net under a bound they lack: a 422, never a 500.
UNFIT_VALUE = asyncpg.DataError
# A row whose execution id falls in no partition of a shard's history tables: the slice that takes
# it is created ahead of time by the shard itself, and a miss means that loop has not caught up
# (or failed for a while): a 503 to retry, and the shard's own alert, not a 500.
NO_SLICE = "no partition of relation"

_encoder = msgspec.json.Encoder()
log = logging.getLogger("noetl.errors")


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers
        self.extra = extra

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message, "status": self.status}
        if self.code:
            body["code"] = self.code
        body["detail"] = {"code": self.code or _generic_code(self.status), "message": self.message}
        body.update(self.extra)
        return body


def _generic_code(status: int) -> str:
    return "client_error" if status < 500 else "server_error"


def bad_request(message: str, code: str | None = None) -> ApiError:
    return ApiError(400, message, code)


def not_found(message: str) -> ApiError:
    return ApiError(404, message, "not_found")


def conflict(message: str, code: str | None = None, **extra: Any) -> ApiError:
    return ApiError(409, message, code, **extra)


def unprocessable(message: str) -> ApiError:
    return ApiError(422, message, "validation_error")


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=_encoder.encode(payload), status=status,
                        content_type="application/json", headers=headers)


def error_response(err: ApiError) -> web.Response:
    return json_response(err.body(), status=err.status, headers=err.headers)


async def read_json(request: web.Request, type_: type[T], *, allow_empty: bool = False) -> T:
    """Decode the request body into `type_`, with errors that name the offending field."""
    raw = await request.read()  # raises HTTPRequestEntityTooLarge past client_max_size
    return decode_json(raw, type_, allow_empty=allow_empty)


def decode_json(raw: bytes, type_: type[T], *, allow_empty: bool = False) -> T:
    """read_json's decoding, for a body that came otherwise (an item of a relayed batch)."""
    if not raw.strip():
        if allow_empty:
            raw = b"{}"
        else:
            raise bad_request("request body is empty; a JSON object is expected")
    try:
        return msgspec.json.decode(raw, type=type_)
    except msgspec.ValidationError as exc:
        # msgspec says e.g. "Expected `str`, got `int` - at `$.name`"
        raise unprocessable(f"invalid request body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise bad_request(f"malformed JSON: {exc}") from None


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app._client_max_size  # no public accessor; aiohttp keeps it here
        return error_response(ApiError(
            413, f"request body too large: the limit is {limit} bytes", "payload_too_large"))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = exc.reason or "error"
        if exc.status == 404:
            reason = f"no route for {request.method} {request.path}"
        elif exc.status == 405:
            reason = f"method {request.method} is not allowed on {request.path}"
        return error_response(ApiError(exc.status, reason, headers=None))
    except Exception as exc:
        return error_response(api_error(exc, f"{request.method} {request.path}"))


def api_error(exc: Exception, where: str) -> ApiError:
    """The answer a handler's exception gets (`where` names the request in the log)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, UNSTORABLE_TEXT):
        return ApiError(422, f"the request holds text the database cannot store: {exc}", "validation_error")
    if isinstance(exc, UNFIT_VALUE):
        log.warning("value the database refused on %s: %s: %s", where, type(exc).__name__, exc)
        return ApiError(422, f"a value in the request does not fit the database: {exc}", "validation_error")
    if isinstance(exc, PoolSaturated):
        log.warning("pool saturated on %s: %s", where, exc)
        return ApiError(503, "the server is busy; retry shortly", "pool_saturated", headers=RETRY_AFTER)
    if isinstance(exc, DB_UNAVAILABLE):
        # The database is down or unreachable: a client can retry, so say so (NoETL's answer).
        log.warning("database unavailable on %s: %s: %s", where, type(exc).__name__, exc)
        return ApiError(503, "the database is unavailable; retry shortly", "db_unavailable", headers=RETRY_AFTER)
    if isinstance(exc, DB_GAVE_UP):
        log.warning("database gave up on %s: %s: %s", where, type(exc).__name__, exc)
        return ApiError(503, "the database did not finish this in time; nothing was changed, retry shortly",
                        "db_busy", headers=RETRY_AFTER)
    if isinstance(exc, asyncpg.CheckViolationError) and NO_SLICE in str(exc):
        log.error("no history slice for a write on %s: %s", where, exc)
        return ApiError(503, "the history slice for this id is not ready; retry shortly", "history_slice_missing",
                        headers=RETRY_AFTER)
    log.error("unhandled error on %s", where, exc_info=exc)
    return ApiError(500, "internal server error", "internal_error")
