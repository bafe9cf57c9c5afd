"""Turning a registered YAML text into a catalog document: decode, parse, validate, normalise.

Pure functions (no I/O), so they are unit-testable and the DSL parser can replace
`check_playbook` without touching the HTTP layer.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from noetl_common.dsl import PlaybookError, ensure_end_step, parse_playbook

import msgspec
import yaml

PLAYBOOK_KINDS = frozenset({"playbook", "agent"})
API_VERSION = "noetl.io/v2"

# Semantics rule 2 / NoETL: a workflow without an `end` step gets one at registration.


class DocumentError(Exception):
    """The resource cannot be registered; the message names the problem (shown to the client)."""


class CatalogDocument(msgspec.Struct, frozen=True):
    kind: str
    path: str
    text: str                     # the YAML to store: as registered, or re-dumped if normalised
    document: dict[str, Any]      # parsed and normalised (implicit end step added), key order kept
    implicit_end: bool


def decode_content(content: str) -> str:
    """NoETL clients send base64 of the file; people send YAML. Base64 wins only if it decodes
    cleanly to UTF-8 (YAML text is practically never valid strict base64: ':' and spaces)."""
    compact = "".join(content.split())
    if compact and len(compact) % 4 == 0:
        try:
            return base64.b64decode(compact, validate=True).decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            pass
    return content


# Aliases let a small YAML text expand into a huge (or cyclic) document ("billion laughs");
# anchors are legitimate in playbooks, so the expanded size is capped instead of banning them.
MAX_EXPANDED_NODES = 200_000


def parse_yaml(text: str) -> dict[str, Any]:
    try:
        _check_expansion(yaml.compose(text, Loader=yaml.SafeLoader))
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DocumentError(f"invalid YAML{where}: {problem}") from None
    if not isinstance(document, dict):
        raise DocumentError(f"the resource must be a YAML mapping, got {_type_name(document)}")
    _check_keys(document, "")
    return document


def _check_keys(value: Any, where: str) -> None:
    """The document is stored and served as JSON: every mapping key must be a string or a number.
    (YAML 1.1 reads an unquoted `on:`/`yes:` key as a boolean; say so instead of failing later.)"""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, bool) or not isinstance(key, (str, int, float)):
                raise DocumentError(f"mapping key {key!r} at {where or 'the top level'} is not a string; quote it")
            _check_keys(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_keys(item, f"{where}[{index}]")


def _check_expansion(root: yaml.Node | None) -> None:
    sizes: dict[int, int] = {}
    visiting: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in visiting:
            raise DocumentError("the YAML refers to itself through an alias (a cycle)")
        visiting.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        visiting.discard(key)
        if total > MAX_EXPANDED_NODES:
            raise DocumentError(f"the YAML expands to more than {MAX_EXPANDED_NODES} nodes through aliases")
        sizes[key] = total
        return total

    if root is not None:
        size(root)


def resource_path(document: dict[str, Any]) -> str:
    metadata = document.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise DocumentError("metadata must be a mapping")
    metadata = metadata or {}
    for candidate in (metadata.get("path"), document.get("path"), metadata.get("name"), document.get("name")):
        cleaned = candidate.strip().strip("/") if isinstance(candidate, str) else ""
        if cleaned:
            return cleaned
    raise DocumentError("the resource needs metadata.path or metadata.name to be stored under")


def build_document(content: str, resource_type: str) -> CatalogDocument:
    """Decode and parse one registration; playbooks are validated and get an implicit end step."""
    text = decode_content(content)
    if not text.strip():
        raise DocumentError("content is empty")
    document = parse_yaml(text)
    raw_kind = document.get("kind", resource_type)
    if not isinstance(raw_kind, str) or not raw_kind.strip():
        raise DocumentError("kind must be a non-empty string")
    kind = raw_kind.strip()
    path = resource_path(document)
    implicit_end = False
    if kind.lower() in PLAYBOOK_KINDS:
        document, implicit_end = with_end_step(document)
        try:
            check_playbook(text, document)
        except DocumentError as exc:
            raise DocumentError(f"'{path}' is not a valid {kind.lower()}: {exc}") from None
        if implicit_end:
            # Whoever reads the catalog (content or payload) must see the same workflow.
            text = dump_yaml(document)
    return CatalogDocument(kind=kind, path=path, text=text, document=document, implicit_end=implicit_end)


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (code) as `|` blocks, so a re-dumped playbook stays readable."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value and not any(c in value for c in "\t\r") and value == value.rstrip(" ") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _represent_str)


def dump_yaml(document: dict[str, Any]) -> str:
    return yaml.dump(document, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=120)


def with_end_step(document: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    workflow = document.get("workflow")
    if not isinstance(workflow, list) or not workflow:
        return document, False  # check_playbook reports the real problem
    return ensure_end_step(document)


def check_playbook(text: str, document: dict[str, Any]) -> None:
    """Registration-time validation of a playbook (the rules of dsl_reference §1).

    Structure is checked by the engine's parser (`noetl_common.dsl.parse_playbook`), so the
    catalog never accepts a playbook the engine would refuse; errors name the step and field.
    """
    api_version = document.get("apiVersion")
    if api_version != API_VERSION:
        raise DocumentError(f"apiVersion must be {API_VERSION!r}, got {api_version!r}")
    metadata = document.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str) or not metadata["name"].strip():
        raise DocumentError("metadata.name is required")
    workload = document.get("workload")
    if workload is not None and not isinstance(workload, dict):
        raise DocumentError(f"workload must be a mapping, got {_type_name(workload)}")
    for step in document.get("workflow") or []:
        if isinstance(step, dict) and "case" in step:
            raise DocumentError(f"step {step.get('step')!r}: `case` is not supported; use next.arcs with `when`")
    try:  # the engine's own parser: what registers is exactly what can run
        parse_playbook(document)
    except PlaybookError as exc:
        raise DocumentError(str(exc)) from None


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing"}.get(
        type(value), type(value).__name__)
