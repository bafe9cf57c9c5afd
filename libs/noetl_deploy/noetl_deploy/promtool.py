"""The alert rules as Prometheus itself reads them, and their unit tests, for `promtool`.

A PrometheusRule's `spec` is a Prometheus rule file (`groups: [...]`), so the rendered CRD is
unwrapped and written as `noetl-rules.yaml`; `deploy/alert-tests/*.test.yaml.j2` are promtool
unit-test files (`promtool test rules`), rendered with the same values as the rules (thresholds
and runbook links come from deploy/values.yaml) and written beside it. Then

    promtool check rules noetl-rules.yaml
    promtool test rules *.test.yaml

check the rules' syntax and PromQL, and that every alert fires on the series it is meant for and
stays silent on the others (`tests/unit/deploy/test_promtool.py`, in `make test`).
`python -m noetl_deploy.promtool OUT_DIR [--overlay dev]` writes the files for a manual run.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import minijinja
import yaml

from noetl_deploy.render import RenderError, load_values, overlay_values, render_overlay

RULES_FILE = "noetl-rules.yaml"
RUNBOOK = "deploy/README.md#"


def rule_groups(documents: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Every PrometheusRule's groups as one Prometheus rule file."""
    groups: list[dict[str, Any]] = []
    for doc in documents:
        if doc.get("kind") == "PrometheusRule":
            groups += doc.get("spec", {}).get("groups", [])
    if not groups:
        raise RenderError("no PrometheusRule groups in the rendered documents")
    return {"groups": groups}


def alert_names(rules: dict[str, Any]) -> set[str]:
    return {r["alert"] for g in rules["groups"] for r in g.get("rules", []) if "alert" in r}


def render_tests(values: dict[str, Any], overlay: str, tests_dir: Path) -> dict[str, str]:
    """File name (minus .j2) -> rendered promtool test file, one per `*.test.yaml.j2`."""
    v = overlay_values(values, overlay)
    sources = {p.name: p.read_text() for p in sorted(Path(tests_dir).glob("*.test.yaml.j2"))}
    if not sources:
        raise RenderError(f"no *.test.yaml.j2 alert tests in {tests_dir}")
    env = minijinja.Environment(templates=sources)
    env.keep_trailing_newline = True
    env.undefined_behavior = "strict"
    env.auto_escape_callback = lambda _name: None
    out = {}
    for name in sources:
        text = env.render_template(name, a=v["alerts"], runbook=RUNBOOK, rules_file=RULES_FILE)
        try:
            yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RenderError(f"alert test {name} renders invalid YAML: {exc}") from exc
        out[name[: -len(".j2")]] = text
    return out


@dataclass
class Written:
    rules: Path
    tests: list[Path]
    alerts: set[str]


def write(values: dict[str, Any], overlay: str, templates_dir: Path, tests_dir: Path, out_dir: Path) -> Written:
    """The overlay's rule file and its unit tests, side by side in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rules = rule_groups(render_overlay(values, overlay, templates_dir).documents)
    rules_path = out_dir / RULES_FILE
    rules_path.write_text(yaml.safe_dump(rules, sort_keys=False, width=1 << 16))
    tests = []
    for name, text in render_tests(values, overlay, tests_dir).items():
        (out_dir / name).write_text(text)
        tests.append(out_dir / name)
    return Written(rules=rules_path, tests=tests, alerts=alert_names(rules))


def tested_alerts(test_texts: Iterable[str]) -> tuple[set[str], set[str]]:
    """(alerts some test expects to fire, alerts some test expects to stay silent)."""
    fires: set[str] = set()
    silent: set[str] = set()
    for text in test_texts:
        for case in yaml.safe_load(text).get("tests", []):
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    return fires, silent


def promtool() -> str | None:
    return shutil.which("promtool")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    exe = promtool()
    if exe is None:
        raise FileNotFoundError("promtool is not installed (Debian: apt-get install prometheus)")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)


def main(argv: list[str] | None = None) -> int:
    deploy = Path(__file__).resolve().parents[3] / "deploy"
    parser = argparse.ArgumentParser(prog="python -m noetl_deploy.promtool", description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--overlay", default="dev")
    parser.add_argument("--values", type=Path, default=deploy / "values.yaml")
    parser.add_argument("--check", action="store_true", help="also run promtool check rules and test rules")
    args = parser.parse_args(argv)
    written = write(load_values(args.values), args.overlay, deploy / "templates", deploy / "alert-tests", args.out)
    print(f"wrote {written.rules} and {', '.join(str(t) for t in written.tests)}")
    if not args.check:
        return 0
    for cmd in (("check", "rules", str(written.rules)), ("test", "rules", *map(str, written.tests))):
        done = run(*cmd)
        sys.stdout.write(done.stdout + done.stderr)
        if done.returncode:
            return done.returncode
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
