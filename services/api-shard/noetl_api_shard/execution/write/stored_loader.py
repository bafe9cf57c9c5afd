"""Stored results the engine reads past their stubs (noetl_common.engine.stored), loaded from the
result store while the engine runs.

The engine is synchronous and a template asks for a value in the middle of a render, so an
execution whose data holds stubs runs its engine call in a worker thread, and this loader runs the
result-store read on the event loop for it, on the transaction's connection (idle meanwhile: its
task is waiting on the thread) or, on the optimistic path, on the pool. Executions without stubs
run the engine inline as before: no thread on the hot path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Callable, TypeVar

import asyncpg

from noetl_common.errors import RETRY_AFTER, ApiError
from noetl_common.result_refs import ref_of

from ...store import results as result_store

LOAD_TIMEOUT_SECONDS = 30.0
T = TypeVar("T")


def loader(loop: asyncio.AbstractEventLoop, db: asyncpg.Connection | asyncpg.Pool) -> Callable[[Mapping[str, Any]], Any]:
    """A `resolve` for engine.apply, to be called from a thread other than `loop`'s."""

    def resolve(reference: Mapping[str, Any]) -> Any:
        ref = ref_of({"reference": dict(reference)})
        if ref is None:
            return None
        future = asyncio.run_coroutine_threadsafe(result_store.data_by_ids(db, ref.execution_id, [ref.result_id]),
                                                  loop)
        try:
            found = future.result(LOAD_TIMEOUT_SECONDS)
        except TimeoutError:
            future.cancel()
            # Transient: the request is answered 503 and retried; nothing was written.
            raise ApiError(503, f"loading stored result {ref.uri()} took over {LOAD_TIMEOUT_SECONDS:g}s",
                           "db_unavailable", headers=RETRY_AFTER) from None
        return found.get(ref.result_id)

    return resolve


async def run_engine(holds_stored: bool, db: asyncpg.Connection | asyncpg.Pool,
                     call: Callable[[Callable[[Mapping[str, Any]], Any] | None], T]) -> T:
    """`call(resolve)`: inline with no resolver when the data holds no stubs, else in a thread with one."""
    if not holds_stored:
        return call(None)
    return await asyncio.to_thread(call, loader(asyncio.get_running_loop(), db))
