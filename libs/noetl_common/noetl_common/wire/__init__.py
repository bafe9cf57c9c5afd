"""Typed request/response bodies of the HTTP API (msgspec Structs).

Unknown fields are ignored on decode (msgspec's default), so NoETL clients that send extra keys
keep working. Ids arrive as int or decimal string (`IdLike`); handlers normalise them with
`noetl_common.ids.parse_id`, and responses send ids as strings where NoETL does.
"""

from typing import Union

IdLike = Union[int, str]

__all__ = ["IdLike"]
