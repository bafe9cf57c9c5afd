"""Playbook texts shared by the tests."""

from __future__ import annotations

import base64

HELLO = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata:
  name: hello
  path: tests/hello_world
workload:
  greeting: hi
  count: 2
  ratio: 0.5
  enabled: true
workflow:
  - step: start
    tool: {kind: python, code: 'result = {"ok": True}'}
    next:
      arcs:
        - step: finish
  - step: finish
    tool:
      kind: python
      code: |
        x = 1
        result = {"x": x}
"""

WITH_END = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata:
  name: with_end
workflow:
  - step: start
    tool: {kind: noop}
    next: {arcs: [{step: End}]}
  - step: End
    tool: {kind: noop}
"""


def playbook(path: str, *, extra_steps: str = "") -> str:
    return f"""\
apiVersion: noetl.io/v2
kind: Playbook
metadata:
  name: {path.rsplit('/', 1)[-1]}
  path: {path}
workflow:
  - step: start
    tool: {{kind: noop}}
{extra_steps}"""


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
