"""NoETL's ui_schema fields from a workload: kinds from the defaults' YAML types, refined by
`# ui:` comments on the key's own line (and only a top-level key's)."""

from __future__ import annotations

import msgspec
import yaml

from noetl_api_shard.ui_form import workload_form

TEXT = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: demo, path: demo}
workload:
  times: 3          # ui:description=How many rounds
  ratio: 0.5
  name: hi
  loud: false
  tags: [a, b]
  nothing: null
  mode: fast        # ui:enum=[fast, slow] # ui:description=Speed
  token: abc        # ui:secret # ui:credential=pg_*
  db:
    host: h         # ui:secret
    port: 5432
workflow:
  - step: start
    tool: {kind: python, code: "result = 1"}
"""


def fields() -> dict[str, dict]:
    return {f["name"]: f for f in msgspec.to_builtins(workload_form(yaml.safe_load(TEXT), TEXT))}


def test_kinds_follow_the_defaults():
    got = {name: f["kind"] for name, f in fields().items()}
    assert got == {"times": "integer", "ratio": "number", "name": "string", "loud": "boolean", "tags": "array",
                   "nothing": "null", "mode": "enum", "token": "string", "db": "object"}
    assert fields()["times"]["default"] == 3


def test_directives_on_the_key_line():
    f = fields()
    assert f["times"]["description"] == "How many rounds"
    assert f["mode"]["options"] == ["fast", "slow"] and f["mode"]["description"] == "Speed"
    assert f["token"]["secret"] is True and f["token"]["credential_glob"] == "pg_*"
    assert f["ratio"]["secret"] is False and f["ratio"]["options"] is None


def test_nested_mappings_become_children_without_directives():
    db = fields()["db"]
    assert [(c["name"], c["kind"]) for c in db["children"]] == [("host", "string"), ("port", "integer")]
    assert db["secret"] is False and db["children"][0]["secret"] is False


def test_no_workload_no_fields():
    assert workload_form({"workflow": []}, "workflow: []\n") == []
    assert workload_form({"workload": [1]}, "workload: [1]\n") == []
