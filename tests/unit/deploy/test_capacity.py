"""Each overlay's `capacity` (the load its values are sized for) against the measurement: at that
load, every component's CPU per workflow and per event (bench/results/scale.json, a Postgres
server per shard, as production runs) must fit in 65% of the CPU its minimum replicas request.
Raising the stated load without the resources, or lowering the resources, fails here."""

import json

import pytest

from bench.capacity_model import TARGET_UTILISATION
from noetl_deploy.render import OVERLAYS, overlay_values

from .conftest import REPO

MEASURED = json.loads((REPO / "bench" / "results" / "scale.json").read_text())["own_postgres"]["cpu_per_unit"]


def cores(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def requested(values: dict, key: str) -> float:
    return cores(values[key]["resources"]["requests"]["cpu"])


def minimum_cores(v: dict) -> dict[str, float]:
    """Cores requested by the replicas each component has at the least."""
    return {"api-shard": v["shards"] * requested(v, "api_shard"),
            "router": v["router"]["hpa"]["min_replicas"] * requested(v, "router"),
            "outbox-publisher": v["outbox_publisher"]["keda"]["min_replicas"] * requested(v, "outbox_publisher"),
            "projector": v["projector"]["replicas"] * requested(v, "projector"),
            "workers": v["worker"]["keda"]["min_replicas"] * requested(v, "worker"),
            "nats": v["nats"]["replicas"] * requested(v, "nats")}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_values_carry_the_load_they_state(values, overlay):
    v = overlay_values(values, overlay)
    load = v["capacity"]
    assert load["workflows_per_s"] > 0
    for component, available in minimum_cores(v).items():
        unit = MEASURED[component]
        needed = (load["workflows_per_s"] * unit["cpu_ms_per_workflow"]
                  + load["events_per_s"] * unit["cpu_ms_per_event"]) / 1000
        assert needed <= available * TARGET_UTILISATION, (
            f"{overlay}: {component} needs {needed:.2f} cores for {load} but its minimum replicas "
            f"request {available:.2f} (at most {TARGET_UTILISATION:.0%} of it is planned)")
