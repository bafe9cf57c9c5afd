"""The capacity model of deploy/README.md, from a scale-bench run: what to run for a target load.

For each component c, with its CPU per workflow s_c (ms, measured by `make bench-scale` at the
shard cap, median over the shard counts) and the CPU a replica requests R_c (cores), at a target
utilisation u (0.65: headroom for bursts and the health probes a saturated shard answers late):

    replicas_c = ceil(W * s_c / 1000 / (R_c * u))

for W workflows/s; events/s use the per-event CPU the same way, and a mixed load adds the two.
The shard count is the api-shard row; each shard's own Postgres server (shard-postgres, measured
with a server per shard as the StatefulSet runs it) gets that row divided by the shard count, and
the cluster database's server (postgres) is one. Efficiency below 1 measured at the largest shard
count divides the shards' share. The bench's own client is not part of a deployment.

    python -m bench.capacity_model [bench/results/scale.json] [--workflows 50,200,1000] [--events 0]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import msgspec

TARGET_UTILISATION = 0.65
# Cores each replica requests in the prod overlay (deploy/values.yaml); Postgres: per shard server.
REPLICA_CORES = {"api-shard": 1.0, "router": 0.5, "outbox-publisher": 0.5, "projector": 0.5, "workers": 0.5,
                 "nats": 0.5, "shard-postgres": 1.0, "postgres": 1.0}
NOT_DEPLOYED = {"bench-client"}


class Sizing(msgspec.Struct):
    workflows_per_s: float
    events_per_s: float
    replicas: dict[str, int]
    cores: dict[str, float]


def size(cpu_ms: dict[str, dict[str, float]], workflows: float, events: float, efficiency: float = 1.0,
         cores: dict[str, float] | None = None, utilisation: float = TARGET_UTILISATION) -> Sizing:
    """Replicas and cores per component for `workflows`/s plus `events`/s; `efficiency` (aggregate
    over N x one shard's, measured) applies to the shards, which the load is spread across."""
    per_replica = cores or REPLICA_CORES
    replicas: dict[str, int] = {}
    needed: dict[str, float] = {}
    for name, unit_ms in cpu_ms.items():
        if name in NOT_DEPLOYED:
            continue
        demand = (workflows * unit_ms.get("cpu_ms_per_workflow", 0.0) + events * unit_ms.get("cpu_ms_per_event", 0.0)) / 1000
        if name in ("api-shard", "shard-postgres"):
            demand /= efficiency
        needed[name] = round(demand / utilisation, 3)
        replicas[name] = max(1, math.ceil(needed[name] / per_replica.get(name, 1.0)))
    if "shard-postgres" in replicas:  # a server per shard: as many as shards, each with its share
        replicas["shard-postgres"] = replicas.get("api-shard", 1)
        needed["shard-postgres"] = round(needed["shard-postgres"] / replicas["shard-postgres"], 3)
    return Sizing(workflows_per_s=workflows, events_per_s=events, replicas=replicas, cores=needed)


def from_results(path: Path, servers: str = "own") -> tuple[dict[str, dict[str, float]], float]:
    """The per-unit CPU and the efficiency at the largest shard count of one `servers` mode."""
    report = json.loads(path.read_text())[f"{servers}_postgres"]
    eff = report["efficiency"]
    largest = eff[max(eff, key=int)] if eff else {"three_step": 1.0}
    return report["cpu_per_unit"], min(1.0, largest["three_step"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="?", type=Path, default=Path(__file__).parent / "results" / "scale.json")
    parser.add_argument("--servers", default="own", choices=["own", "shared"])
    parser.add_argument("--workflows", default="50,200,1000", type=lambda s: [float(x) for x in s.split(",")])
    parser.add_argument("--events", default=0.0, type=float)
    args = parser.parse_args(argv)
    cpu_ms, eff = from_results(args.results, args.servers)
    names = [n for n in cpu_ms if n not in NOT_DEPLOYED]
    print("replicas (cores needed in all); shard-postgres: servers x cores each")
    print("| workflows/s | events/s | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 2) + "|")
    for w in args.workflows:
        s = size(cpu_ms, w, args.events, eff)
        # shard-postgres: cores of each server; every other column: cores of all replicas together
        cells = [f"{s.replicas[n]} x {s.cores[n]:.2f}" if n == "shard-postgres" else f"{s.replicas[n]} ({s.cores[n]:.2f})"
                 for n in names]
        print(f"| {w:g} | {args.events:g} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
