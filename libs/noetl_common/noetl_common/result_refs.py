"""NoETL result-store references: `noetl://execution/<execution_id>/result/<name>/<result_id>`
(what `PUT /api/result/{execution_id}` answers and `GET /api/result/resolve?ref=` takes). The
execution id inside routes a reference to the shard that stores it; the name may hold slashes."""

from __future__ import annotations

import msgspec

from .ids import ID_DIGITS, parse_id

PREFIX = "noetl://execution/"
# What parse_ref takes, as a JSON Schema pattern (the API documents the ref query parameter with it).
REF_PATTERN = rf"^noetl://execution/{ID_DIGITS}/result/.+/{ID_DIGITS}$"


class ResultRef(msgspec.Struct, frozen=True):
    execution_id: int
    name: str
    result_id: int

    def uri(self) -> str:
        return f"{PREFIX}{self.execution_id}/result/{self.name}/{self.result_id}"


def parse_ref(text: str) -> ResultRef:
    """Raises ValueError saying which part of the reference is wrong."""
    if not isinstance(text, str) or not text.startswith(PREFIX):
        raise ValueError(f"ref must look like {PREFIX}<execution_id>/result/<name>/<id>, got {text!r}")
    parts = text[len(PREFIX):].split("/")
    if len(parts) < 4 or parts[1] != "result":
        raise ValueError(f"ref must look like {PREFIX}<execution_id>/result/<name>/<id>, got {text!r}")
    name = "/".join(parts[2:-1])
    if not name:
        raise ValueError(f"ref has an empty result name: {text!r}")
    return ResultRef(execution_id=parse_id(parts[0], "the ref's execution id"), name=name,
                     result_id=parse_id(parts[-1], "the ref's result id"))


def ref_of(value: object) -> ResultRef | None:
    """The stored-result reference in a NoETL result envelope (`{status, reference: {kind:
    "result_ref", ref, ...}, context?}`, the Rust worker's over-budget `call.done` result), or None."""
    if not isinstance(value, dict):
        return None
    reference = value.get("reference")
    if not isinstance(reference, dict) or not isinstance(reference.get("ref"), str):
        return None
    if reference.get("kind", "result_ref") != "result_ref" or not reference["ref"].startswith(PREFIX):
        return None
    try:
        return parse_ref(reference["ref"])
    except ValueError:
        return None
