"""What a worker's finishing event gives the engine as the step's result, and keeping large
results out of the event log (NoETL's limit: `NOETL_EVENT_RESULT_CONTEXT_MAX_BYTES`, 100 KiB by
default, `ShardSettings.event_result_max_bytes`).

A logged event's step result is, in NoETL's engine's order, `payload.response` when the payload
has one (NoETL's Python worker: `{response: <value>, result: {status, context}}`, the envelope
holding only a control-plane digest of the value), else `payload.result`, one of:
- the value itself (this fleet's worker);
- the Rust worker's envelope `{status, context}` (its `call.done` carries `call_index`): the
  value is `context`;
- a stored-result envelope `{status, context: {data: {_ref}}, reference: {kind: "result_ref",
  ref: "noetl://execution/<eid>/result/<name>/<id>", store, scope, meta: {bytes, sha256}}}`: the
  value is in `noetl.result_store`. The Rust worker PUTs its over-budget results and sends this;
  the shard writes it itself for any other result over the limit, in the event's transaction.

A stored value that is a mapping is seen by the engine with NoETL's two extra keys: `_ref` (the
reference, what `kind: artifact` `action: get` takes to load it again) and `_store` (the tier it is
in), so `{{ step._ref is defined }}` tells a playbook its result was kept out of the log.

Ingest and replay both go through `value_of`, so a replay folds the same values ingest did (as
long as the stored rows are kept: a result deleted by cleanup cannot be replayed).
"""

from __future__ import annotations

from typing import Any, Mapping

import msgspec

from noetl_common.errors import ApiError
from noetl_common.result_refs import ResultRef, ref_of

from ...store import results as result_store
from .worker_events import FINISH_OK, WorkerEvent

EVENT_RESULT_MAX_BYTES = 100 * 1024
RUST_ENVELOPE_KEYS = frozenset({"status", "context", "reference", "command_id"})
_encoder = msgspec.json.Encoder()


def inline_value(payload: Mapping[str, Any]) -> Any:
    """The value an event carries in its payload, without any store lookup."""
    if "response" in payload:
        return payload["response"]
    result = payload.get("result")
    if ("call_index" in payload and isinstance(result, dict) and "status" in result
            and set(result) <= RUST_ENVELOPE_KEYS):
        return result.get("context")
    return result


def value_of(payload: Mapping[str, Any], stored: Mapping[int, Any]) -> Any:
    """The step result of a logged event; `stored` maps result ids to values (see `refs_in`)."""
    result = payload.get("result")
    ref = ref_of(result)
    if ref is not None:
        return with_ref(stored.get(ref.result_id), _reference(result))
    return inline_value(payload)


def _reference(result: Any) -> Mapping[str, Any]:
    """The `reference` of an envelope `ref_of` recognised (so a mapping with one)."""
    return result["reference"] if isinstance(result, dict) else {}


def with_ref(value: Any, reference: Mapping[str, Any]) -> Any:
    """A stored mapping as the engine sees it: its keys and `_ref`/`_store` (see the module doc)."""
    if not isinstance(value, dict):
        return value
    return {**value, "_ref": dict(reference), "_store": reference.get("store") or "db"}


def refs_in(payloads: list[Mapping[str, Any]]) -> list[ResultRef]:
    return [r for r in (ref_of(p.get("result")) for p in payloads) if r is not None]


def needs_store(ev: WorkerEvent, limit: int = EVENT_RESULT_MAX_BYTES) -> bool:
    """A successful outcome whose result is a stored reference or too large to log: the shard
    must read or write `noetl.result_store` (the locking path, never the one-statement one)."""
    if ev.event_type not in FINISH_OK or ("result" not in ev.payload and "response" not in ev.payload):
        return False
    return ref_of(ev.payload.get("result")) is not None or _too_large(inline_value(ev.payload), limit)


def _too_large(value: Any, limit: int) -> bool:
    if value is None or isinstance(value, (bool, int, float)):
        return False
    if isinstance(value, str):
        return len(value) > limit // 4 and len(value.encode()) > limit
    return len(_encoder.encode(value)) > limit


async def prepare(svc: Any, conn: Any, ev: WorkerEvent, limit: int = EVENT_RESULT_MAX_BYTES) -> None:
    """Before `ev` is logged (locking path): resolve its stored reference, or store its too-large
    result and log a reference in its place. Sets `ev.value`, the step result for the engine."""
    if not needs_store(ev, limit):
        return
    result = ev.payload.get("result")
    ref = ref_of(result)
    if ref is not None:
        if ref.execution_id != ev.execution_id:
            raise ApiError(422, f"result reference {ref.uri()} belongs to execution {ref.execution_id}, "
                                f"not {ev.execution_id}", "validation_error")
        found = await result_store.data_by_ids(conn, ref.execution_id, [ref.result_id])
        if ref.result_id not in found:
            raise ApiError(422, f"result reference {ref.uri()} is not in the result store "
                                "(PUT /api/result/{execution_id} first)", "validation_error")
        ev.value = with_ref(found[ref.result_id], _reference(result))
        return
    value = inline_value(ev.payload)
    size, sha = result_store.measure(value)
    name = ev.step or "result"
    stored = result_store.StoredResult(result_id=svc.mint_owned_id(), execution_id=ev.execution_id, name=name,
                                       data=value, bytes=size, sha256=sha, source_step=ev.step)
    await result_store.insert(conn, stored)
    uri = ResultRef(ev.execution_id, name, stored.result_id).uri()
    status = result.get("status") if isinstance(result, dict) and "call_index" in ev.payload else None
    kept = {k: v for k, v in ev.payload.items() if k != "response"}  # the value moves to the store
    reference = {"kind": "result_ref", "ref": uri, "store": stored.store, "scope": stored.scope,
                 "meta": {"bytes": size, "sha256": sha, "media_type": "application/json", "offloaded_by": "shard"}}
    ev.payload = {**kept, "result": {"status": status or ev.status or "COMPLETED",
                                     "context": {"data": {"_ref": uri}}, "reference": reference}}
    ev.value = with_ref(value, reference)


def engine_value(ev: WorkerEvent) -> Any:
    """The step result of an event being ingested (after `prepare`, when it was needed)."""
    return ev.value if ev.value is not msgspec.UNSET else inline_value(ev.payload)
