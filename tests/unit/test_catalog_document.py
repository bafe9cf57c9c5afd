"""Catalog document handling without a database: decoding, parsing, implicit end, validation."""

from __future__ import annotations

import base64

import pytest
import yaml

from noetl_api_shard.catalog_document import (
    DocumentError,
    build_document,
    decode_content,
    dump_yaml,
    resource_path,
)

PLAYBOOK = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: demo, path: /team/demo/}
workload: {a: 1, b: [1, 2], c: null}
workflow:
  - step: start
    tool: {kind: python, code: "x = 1\\nresult = x\\n"}
    next: {arcs: [{step: end}]}
"""


def test_base64_and_plain_decode_to_the_same_text():
    assert decode_content(base64.b64encode(PLAYBOOK.encode()).decode()) == PLAYBOOK
    assert decode_content(PLAYBOOK) == PLAYBOOK
    wrapped = base64.encodebytes(PLAYBOOK.encode()).decode()  # MIME-style, with newlines
    assert decode_content(wrapped) == PLAYBOOK
    assert decode_content("kind") == "kind"  # valid base64 but not UTF-8 text: kept as given


def test_build_document_adds_end_and_keeps_arcs_valid():
    doc = build_document(PLAYBOOK, "Playbook")
    assert doc.path == "team/demo" and doc.kind == "Playbook" and doc.implicit_end
    assert [s["step"] for s in doc.document["workflow"]] == ["start", "end"]
    assert yaml.safe_load(doc.text) == doc.document


def test_yaml_errors_carry_a_position():
    with pytest.raises(DocumentError, match=r"invalid YAML at line 2, column \d+"):
        build_document("a: 1\n b: : 2\n  - x", "Playbook")


def test_dump_keeps_multiline_code_readable():
    text = dump_yaml({"code": "a = 1\nb = 2\n", "z": 1, "a": 2})
    assert "code: |" in text and text.index("z:") < text.index("a: 2")


def test_resource_path_order_of_preference():
    assert resource_path({"metadata": {"path": "p", "name": "n"}}) == "p"
    assert resource_path({"metadata": {"name": "n"}, "path": "top"}) == "top"
    assert resource_path({"metadata": {"name": "n"}}) == "n"
    with pytest.raises(DocumentError):
        resource_path({"metadata": {}})


def test_alias_bombs_are_rejected_but_anchors_work():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    previous = "a"
    for name in "bcdefghij":
        bomb += f"{name}: &{name} [*{previous}, *{previous}, *{previous}, *{previous}, *{previous}, " \
                f"*{previous}, *{previous}, *{previous}, *{previous}, *{previous}]\n"
        previous = name
    with pytest.raises(DocumentError, match="expands to more than"):
        build_document(bomb, "Resource")
    anchored = PLAYBOOK + "defaults: &d {retries: 2}\nother: {<<: *d, extra: 1}\n"
    assert build_document(anchored, "Playbook").document["other"] == {"retries": 2, "extra": 1}


def test_cyclic_alias_is_rejected():
    with pytest.raises(DocumentError, match="cycle"):
        build_document("metadata: {name: x}\na: &a [*a]\n", "Resource")


def test_keys_that_json_cannot_hold_are_named():
    with pytest.raises(DocumentError, match=r"mapping key True at workflow\[0\].tool is not a string"):
        build_document(PLAYBOOK.replace("tool: {kind: python,", "tool: {on: 1, kind: python,"), "Playbook")
    with pytest.raises(DocumentError, match="invalid YAML"):
        build_document("? [1, 2]\n: y\n", "Playbook")
