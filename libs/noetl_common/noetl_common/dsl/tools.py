"""One `tool:` mapping -> the flat config the engine renders and the worker runs.

NoETL playbooks spell a tool two ways: flat (`{kind: http, url, params}`) and with the
configuration nested under `spec` (`{kind: http, spec: {method, url, params, policy}}`). Both
become the flat form here, so the engine and the workers read one shape; `spec` keeps only
`policy`, which is what pipelines read."""

from __future__ import annotations

from typing import Any

from .errors import PlaybookError, mapping

KNOWN_KINDS = frozenset({
    "python", "http", "postgres", "duckdb", "playbook", "workbook", "noop", "shell", "snowflake", "ducklake",
    "nats", "container", "artifact", "transfer", "subscription", "script", "agent", "iterator", "secrets",
    "gcs", "mcp", "task_sequence", "playbooks", "gateway", "snowflake_transfer", "rhai", "wasm", "result_fetch"})
# What a tool of these kinds must name to have anything to run (checked at registration).
# `commands` is the Python-era SQL spelling NoETL's Python tools still read.
REQUIRED_FIELDS = {"postgres": ("command", "commands", "query", "sql", "script"),
                   "duckdb": ("command", "commands", "query", "sql", "script"),
                   "python": ("code", "script"), "http": ("url", "endpoint")}


def normalise(step: str, where: str, tool: Any) -> dict[str, Any]:
    """`spec` lifted, inputs as one `input` mapping, kind checked. Keys the tool itself gives win
    over the same keys under `spec` (the flat spelling is the explicit one)."""
    tool = mapping(step, where, tool)
    kind = tool.get("kind")
    if not isinstance(kind, str) or not kind:
        raise PlaybookError(f"step '{step}': {where}.kind is required")
    if kind not in KNOWN_KINDS:
        raise PlaybookError(f"step '{step}': {where}.kind '{kind}' is not a known tool kind")
    spec = mapping(step, f"{where}.spec", tool.get("spec"))
    out = {k: v for k, v in spec.items() if k not in ("policy", "input", "args")}
    out.update({k: v for k, v in tool.items() if k not in ("spec", "input", "args")})
    inputs = {**_inputs(step, f"{where}.spec", spec), **_inputs(step, where, tool)}
    if inputs:
        out["input"] = inputs
    args = tool.get("args")
    if args is not None and not isinstance(args, dict):
        out["args"] = args  # a list is the tool's own argument vector (container: `args: [...]`)
    policy = spec.get("policy")
    if policy is not None:
        _check_policy(step, f"{where}.spec.policy", policy)
        out["spec"] = {"policy": policy}
    _check_required(step, where, kind, out)
    return out


def _inputs(step: str, where: str, tool: dict[str, Any]) -> dict[str, Any]:
    """`input:` (or the older `args:`) as a mapping. A list under `args` is not inputs (see above);
    a list under `input` is a mistake NoETL rejects too."""
    value = tool.get("input")
    if value is None and isinstance(tool.get("args"), dict):
        value = tool["args"]
    return mapping(step, f"{where}.input", value)


def _check_policy(step: str, where: str, policy: Any) -> None:
    policy = mapping(step, where, policy)
    rules = policy.get("rules")
    if rules is None:
        return
    if not isinstance(rules, list):
        raise PlaybookError(f"step '{step}': {where}.rules must be a list")
    for i, rule in enumerate(rules):
        rule = mapping(step, f"{where}.rules[{i}]", rule)
        body = rule.get("else") if "else" in rule else rule.get("then")
        body = mapping(step, f"{where}.rules[{i}].{'else' if 'else' in rule else 'then'}", body)
        if "then" in body and "else" in rule:
            mapping(step, f"{where}.rules[{i}].else.then", body["then"])


def _check_required(step: str, where: str, kind: str, config: dict[str, Any]) -> None:
    fields = REQUIRED_FIELDS.get(kind)
    if fields and not any(config.get(f) for f in fields):
        raise PlaybookError(f"step '{step}': {where} of kind {kind} needs one of: {', '.join(fields)}")
    script = config.get("script")
    if script is not None and kind in ("postgres", "duckdb", "python"):
        script = mapping(step, f"{where}.script", script)
        source = mapping(step, f"{where}.script.source", script.get("source"))
        if not (script.get("uri") or source.get("code") or source.get("path")):
            raise PlaybookError(f"step '{step}': {where}.script needs `uri` (or source.code for an inline script)")


def policy_rules(config: dict[str, Any]) -> list[Any]:
    return ((config.get("spec") or {}).get("policy") or {}).get("rules") or []
