"""The workload form of a catalog resource (GET /api/catalog/{path}/ui_schema), in NoETL's shape:
one field per top-level workload key whose `kind` follows its default's YAML type, refined by
`# ui:` comments on the key's own line (`secret`, `enum=[a,b]`, `credential=glob`,
`description=text`). NoETL's web UI draws its Run dialog from it (a number box for an integer, so
`times: 3` is sent as 3, not "3"). Pure functions: no I/O."""

from __future__ import annotations

import re
from typing import Any

from noetl_common.wire.catalog import UiField

# One `# ui:key` or `# ui:key=value` token; the value ends at the next ` #` or the line's end.
_DIRECTIVE = re.compile(r"#\s*ui:([A-Za-z_]\w*)(?:\s*=\s*([^#\n]*?))?(?=\s+#|\s*$)")
_KEY_LINE = re.compile(r"^(\s+)([A-Za-z_][\w-]*)\s*:")


def workload_form(document: dict[str, Any], text: str) -> list[UiField]:
    """The form's fields, in the workload's key order; [] without a workload mapping."""
    workload = document.get("workload")
    if not isinstance(workload, dict):
        return []
    directives = _directives(text)
    return [_field(str(name), value, directives.get(str(name), {})) for name, value in workload.items()]


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "string"


def _field(name: str, value: Any, directives: dict[str, Any]) -> UiField:
    description = directives.get("description")
    if isinstance(description, list):
        description = ", ".join(description)
    glob = directives.get("credential")
    options = directives.get("enum")
    kind = "enum" if options is not None else _kind(value)
    return UiField(
        name=name, kind=kind, default=value,
        description=description if isinstance(description, str) else None,
        secret=bool(directives.get("secret", False)),
        credential_glob=glob if isinstance(glob, str) else None,
        options=(options if isinstance(options, list) else [options]) if options is not None else None,
        children=[_field(str(k), v, {}) for k, v in value.items()] if kind == "object" else None)


def _directives(text: str) -> dict[str, dict[str, Any]]:
    """`# ui:` directives per immediate child of the top-level `workload:` block (a nested key of
    the same name must not lend its comment to the top-level one)."""
    found: dict[str, dict[str, Any]] = {}
    inside, child_indent = False, None
    for line in text.splitlines():
        body = line.lstrip()
        if not body or body.startswith("#"):
            continue
        indent = len(line) - len(body)
        if indent == 0:
            inside, child_indent = body.startswith("workload:"), None
            continue
        if not inside:
            continue
        child_indent = indent if child_indent is None else child_indent
        match = _KEY_LINE.match(line)
        if indent != child_indent or match is None:
            continue
        tokens = {m.group(1): _value(m.group(2)) for m in _DIRECTIVE.finditer(line)}
        if tokens:
            found[match.group(2)] = tokens
    return found


def _value(raw: str | None) -> Any:
    text = (raw or "").strip()
    if not text:
        return True
    if text.startswith("[") and text.endswith("]"):
        return [part.strip().strip("'\"") for part in text[1:-1].split(",") if part.strip()]
    if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text
