"""A command as NoETL's own Python worker runs it. That worker reads a command's `tool_config`
(a task list as `tool_config.tasks`) and `input`; this fleet's workers read `tool`, `pipeline` and
`args`, which keep the playbook's own form. Where a playbook uses a spelling the fleet's tools
accept and NoETL's tools do not, NoETL's keys carry the same step in a form NoETL's tools run
with the same meaning:

- python code that reads `input_data` (semantics rule 10): the input map is also bound as
  `input_data` (NoETL's python tool binds each input as a variable, not the map);
- python code with a top-level `return`: wrapped in a function, exactly as the fleet's python
  tool runs it (NoETL's refuses it: 'return' outside function);
- duckdb `database: ':memory:'`: a named in-memory database of the command's own
  (`:memory:/<command id>`), since NoETL's duckdb tool makes the path's directory first and
  `:memory:` has none; the name keeps concurrent commands on one worker apart.
"""

from __future__ import annotations

from typing import Any

from noetl_common.tools.python_tool import plain_code

INPUT_ALIAS = "input_data"
IN_MEMORY = ":memory:"


def tool_config(kind: str, config: dict[str, Any], pipeline: list[dict[str, Any]] | None,
                command_id: int) -> dict[str, Any]:
    """`tool_config` for NoETL's worker: a single tool's config, or a task list as `tasks`
    (each task carries its own input, which NoETL's task sequence renders)."""
    if pipeline is not None:
        tasks = [_task(task, command_id) for task in pipeline]
        return {**config, "tasks": tasks}
    return _config(kind, config, command_id)


def command_input(kind: str, config: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """`input` for NoETL's worker: a single tool's rendered inputs (plus the alias its code reads)."""
    return _with_alias(kind, config, inputs)


def _task(task: dict[str, Any], command_id: int) -> dict[str, Any]:
    kind = str(task.get("kind") or "")
    out = _config(kind, task, command_id)
    declared = {**(task.get("args") or {}), **(task.get("input") or {})}
    aliased = _with_alias(kind, task, declared)
    if aliased is not declared:
        out["input"] = aliased
    return out


def _config(kind: str, config: dict[str, Any], command_id: int) -> dict[str, Any]:
    if kind == "python" and isinstance(config.get("code"), str):
        code = plain_code(config["code"])
        if code is not config["code"]:
            return {**config, "code": code}
    if kind == "duckdb" and config.get("database") == IN_MEMORY:
        return {**config, "database": f"{IN_MEMORY}/{command_id}"}
    return config


def _with_alias(kind: str, config: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """The inputs with `input_data` bound to them, when python code reads it and no input of
    that name is declared (a declared one wins, semantics rule 3); else the inputs themselves."""
    code = config.get("code")
    if kind != "python" or not isinstance(code, str) or INPUT_ALIAS not in code or INPUT_ALIAS in inputs:
        return inputs
    return {**inputs, INPUT_ALIAS: dict(inputs)}
