"""Typed request/response bodies of the HTTP API (msgspec Structs).

Unknown fields are ignored on decode (msgspec's default), so NoETL clients that send extra keys
keep working. Ids arrive as int or decimal string (`IdLike`); handlers normalise them with
`noetl_common.ids.parse_id`, and responses send ids as strings where NoETL does.

What a handler checks is stated on the Struct, so the OpenAPI document (noetl_common.openapi)
says it too: `msgspec.Meta` constraints (enforced on decode), `Id` for ids parse_id must accept,
and `any_of_required` for "one of these fields" (the handler checks that one itself).
"""

from typing import Annotated, Any, Union

import msgspec

from ..ids import ID_DIGITS, ID_PATTERN

IdLike = Union[int, str]
# An id parse_id will take: an int, or the ASCII digits of a non-negative int64. Stated, not
# enforced here: parse_id in the handler answers the 400 naming the field, as before. The int
# branch states no bounds (0..MAX_ID): JSON Schema counts 5.0 as an integer, and generators that
# read bounds send such whole floats, which msgspec (rightly, for an id) refuses.
Id = Union[int, Annotated[str, msgspec.Meta(extra_json_schema={"pattern": ID_PATTERN})]]
# An id, or "" for none (event_id).
IdOrEmpty = Union[int, Annotated[str, msgspec.Meta(extra_json_schema={"pattern": rf"^{ID_DIGITS}?$"})]]


# A catalog version as execute and catalog/resource take it: 1..2^31-1 (the column is an integer),
# or "latest"/"" for the newest; stated like Id (the handlers answer 400 naming `version`).
MAX_VERSION = 2**31 - 1
VERSION_PATTERN = r"^(?:latest|[1-9][0-9]{0,8})?$"
Version = Union[int, Annotated[str, msgspec.Meta(extra_json_schema={"pattern": VERSION_PATTERN})]]
# The same as a query parameter (always text there).
VersionParam = Annotated[str, msgspec.Meta(pattern=VERSION_PATTERN)]
# A command id as an event may carry it: an id, "", or the Rust server's
# "<execution_id>:<step>:<event_id>[:...]" (or "<anything>:<id>"), whose id part is used.
COMMAND_ID_PATTERN = rf"^(?:|{ID_DIGITS}|[^:]*:{ID_DIGITS}|[^:]*:[^:]*:{ID_DIGITS}(?::.*)?)$"
CommandId = Union[int, Annotated[str, msgspec.Meta(extra_json_schema={"pattern": COMMAND_ID_PATTERN})]]
# An RFC 3339 date-time as msgspec decodes it (the schema's `format` alone is only an annotation
# in JSON Schema 2020-12; generators send any text for it).
DATETIME_PATTERN = (r"^[1-9][0-9]{3}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])T(?:[01][0-9]|2[0-3]):[0-5][0-9]"
                    r":[0-5][0-9](?:\.[0-9]{1,6})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?$")
# Some text: at least one character that is not blank (handlers strip names).
NotBlank = Annotated[str, msgspec.Meta(pattern=r"\S")]


def any_of_required(*names: str) -> dict[str, Any]:
    """A Struct's `__json_schema_extra__` for "at least one of these fields, not null" (e.g.
    execute's path or catalog_id): JSON Schema's anyOf over one `required` per field."""
    return {"anyOf": [{"required": [name], "properties": {name: {"not": {"type": "null"}}}} for name in names]}


def all_required(*names: str) -> dict[str, Any]:
    """A Struct's `__json_schema_extra__` for fields typed optional (so the handler can name the one
    missing) that a request must nevertheless carry, not null."""
    return {"allOf": [{"required": list(names), "properties": {name: {"not": {"type": "null"}} for name in names}}]}


__all__ = ["COMMAND_ID_PATTERN", "CommandId", "DATETIME_PATTERN", "Id", "IdLike", "IdOrEmpty", "MAX_VERSION",
           "NotBlank", "all_required", "VERSION_PATTERN", "Version", "VersionParam",
           "any_of_required"]
