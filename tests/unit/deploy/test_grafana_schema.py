"""The dashboard against Grafana's own dashboard schema (grafana-foundation-sdk's generated types):
no field the schema does not know, every value of the schema's type; and proof the check fails."""

import copy
import json

from noetl_deploy.dashboard import build_dashboard
from noetl_deploy.grafana_schema import problems
from noetl_deploy.metrics import dashboards_in
from noetl_deploy.render import OVERLAYS, render_overlay

from .conftest import TEMPLATES, VALUES


def test_built_and_committed_dashboards_match_grafanas_schema(values):
    assert problems(build_dashboard()) == []
    assert problems(json.loads((VALUES.parent / "dashboards" / "noetl-shards.json").read_text())) == []
    for overlay in OVERLAYS:
        (dashboard,) = dashboards_in(render_overlay(values, overlay, TEMPLATES, shards=2).documents)
        assert problems(dashboard) == [], overlay


def test_schema_check_rejects_unknown_fields_and_wrong_types():
    bad = copy.deepcopy(build_dashboard())
    panel = next(p for p in bad["panels"] if p["type"] == "timeseries")
    bad["refreshh"] = "30s"
    panel["gridPos"]["w"] = "12"
    panel["targets"][0]["legend"] = "x"
    panel["options"]["legend"]["placement"] = "top"
    shard = next(v for v in bad["templating"]["list"] if v["name"] == "shard")
    shard["refresh"] = 7
    found = "\n".join(problems(bad))
    for expected in (".refreshh: not a field", ".targets[0].legend: not a field", "grid_pos.w: expected int",
                     "options.legend.placement: 'top' is not one of", ".refresh: 7 is not one of"):
        assert expected in found, found
