"""The rendered alert rules checked by Prometheus' own tool: `promtool check rules` (syntax, PromQL,
templates) and `promtool test rules` on deploy/alert-tests (every alert fires on the series it is
meant for and stays silent on the others). promtool is Debian's `prometheus` package; `make test`
installs it when it can (see the Makefile's `tools` step)."""

from __future__ import annotations

import copy

import pytest
import yaml

from noetl_deploy import promtool
from noetl_deploy.render import OVERLAYS, render_overlay

from .conftest import REPO, TEMPLATES

TESTS_DIR = REPO / "deploy" / "alert-tests"

needs_promtool = pytest.mark.skipif(
    promtool.promtool() is None,
    reason="promtool not installed and could not be installed here (Debian: apt-get install -y prometheus; "
           "`make test` tries that itself when run as root): the alert rules were NOT checked by Prometheus")


def test_every_alert_has_a_firing_and_a_silent_case(values):
    for overlay in OVERLAYS:
        texts = promtool.render_tests(values, overlay, TESTS_DIR).values()
        fires, silent = promtool.tested_alerts(texts)
        alerts = promtool.alert_names(promtool.rule_groups(
            render_overlay(values, overlay, TEMPLATES).documents))
        assert alerts, overlay
        assert alerts - fires == set(), f"{overlay}: no promtool case where these fire"
        assert alerts - silent == set(), f"{overlay}: no promtool case where these stay silent"
        assert fires | silent <= alerts, f"{overlay}: tests name alerts that do not exist"


@needs_promtool
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_promtool_checks_and_unit_tests_pass(values, overlay, tmp_path):
    written = promtool.write(values, overlay, TEMPLATES, TESTS_DIR, tmp_path)
    check = promtool.run("check", "rules", str(written.rules))
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {sum(len(g['rules']) for g in yaml.safe_load(written.rules.read_text())['groups'])} rules" \
        in check.stdout + check.stderr
    tested = promtool.run("test", "rules", *map(str, written.tests))
    assert tested.returncode == 0, tested.stdout + tested.stderr


@needs_promtool
def test_promtool_catches_a_wrong_threshold_and_bad_promql(values, tmp_path):
    """Proof the check can fail: a rule whose threshold moved no longer fires where its test says,
    and an expression Prometheus cannot parse fails `check rules`."""
    written = promtool.write(values, "dev", TEMPLATES, TESTS_DIR, tmp_path)
    rules = yaml.safe_load(written.rules.read_text())
    moved = copy.deepcopy(rules)
    for group in moved["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "ProjectionLag":
                rule["expr"] = rule["expr"].replace(str(values["alerts"]["projection_lag_threshold"]), "1000000")
    written.rules.write_text(yaml.safe_dump(moved, sort_keys=False))
    tested = promtool.run("test", "rules", *map(str, written.tests))
    assert tested.returncode != 0 and "ProjectionLag" in tested.stdout + tested.stderr

    broken = copy.deepcopy(rules)
    broken["groups"][0]["rules"][0]["expr"] = "sum by (shard (noetl_up)"
    written.rules.write_text(yaml.safe_dump(broken, sort_keys=False))
    check = promtool.run("check", "rules", str(written.rules))
    assert check.returncode != 0
