"""Every metric name the rendered alerts and Grafana dashboard query has samples on a running
fleet: scraped from the /metrics of every process after an execution went through."""

from __future__ import annotations

import re
from pathlib import Path

from noetl_deploy.metrics import referenced_metrics
from noetl_deploy.render import load_values, render_overlay

from .conftest import register, wait_terminal

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]")
HISTOGRAM = re.compile(r"^# TYPE (\S+) histogram$")
PROMETHEUS_OWN = {"up"}  # recorded by Prometheus itself for every scrape target
PLAYBOOK = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: scraped, path: tests/scraped}
workflow:
  - step: start
    tool: {kind: python, code: "result = 1"}
"""


def exported_names(text: str) -> set[str]:
    """Names with at least one sample; a histogram by its base name once it has `_bucket` samples
    (a labelled metric never observed has only its HELP/TYPE lines, and counts as not exported)."""
    histograms = {m.group(1) for line in text.splitlines() if (m := HISTOGRAM.match(line))}
    names = set()
    for line in text.splitlines():
        if m := SAMPLE.match(line):
            name = m.group(1)
            names.add(name)
            if name.endswith("_bucket") and name[: -len("_bucket")] in histograms:
                names.add(name[: -len("_bucket")])
    return names


async def test_alerts_and_dashboards_only_query_exported_metrics(live_fleet, http):
    await register(http, live_fleet.router, PLAYBOOK)
    async with http.post(f"{live_fleet.router}/api/execute", json={"path": "tests/scraped"}) as r:
        await wait_terminal(http, live_fleet.router, (await r.json())["execution_id"])
    exported: set[str] = set()
    for spec in live_fleet.specs:
        async with http.get(f"{spec.url}/metrics") as r:
            assert r.status == 200, spec.name
            exported |= exported_names(await r.text())
    for overlay in ("dev", "prod"):
        rendered = render_overlay(load_values(DEPLOY / "values.yaml"), overlay, DEPLOY / "templates", shards=3)
        used = referenced_metrics(rendered.documents) - PROMETHEUS_OWN
        assert used, "the alerts and dashboards query no metrics at all"
        missing = sorted(used - exported)
        assert not missing, f"{overlay}: queried but not exported by any process: {missing}"
