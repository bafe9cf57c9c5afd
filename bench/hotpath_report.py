"""The hot-path bench's verdicts and text: ratios fleet/peer, the durability of every side (a
comparison between sides of different durability is marked invalid), issue 24's targets evaluated
against the numbers, and the printed summary."""

from __future__ import annotations

PEER_LABELS = {"dbos": "DBOS", "restate": "Restate"}


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def ratios(fleet: dict, peer: dict) -> dict:
    """fleet / peer; above 1 = the fleet does more (throughput) or spends more (cost)."""
    if "three_step" not in peer:
        return {}  # the peer was skipped
    fa, pa = fleet["three_step"], peer["three_step"]
    out = {"wf_per_s": ratio(fa["wf_per_s"], pa["wf_per_s"]),
           "server_p50_ms": ratio(fa["server_p50_ms"], pa["server_p50_ms"]),
           "client_p50_ms": ratio(fa["client_p50_ms"], pa["client_p50_ms"]),
           "cpu_ms_per_wf": ratio(fa["cost_per_workflow"]["cpu_ms"]["total"],
                                  pa["cost_per_workflow"]["cpu_ms"]["total"])}
    on_postgres = peer.get("uses_postgres", True)  # Restate keeps its log in its own RocksDB
    if on_postgres:
        out["write_xacts_per_wf"] = ratio(fa["cost_per_workflow"]["db"]["write_xacts"],
                                          pa["cost_per_workflow"]["db"]["write_xacts"])
    if "three_step_rounds" in fleet and pa.get("start_pattern") == "rounds":
        for q in ("p50", "p99"):
            out[f"rounds_server_{q}_ms"] = ratio(fleet["three_step_rounds"][f"server_{q}_ms"], pa[f"server_{q}_ms"])
        out["rounds_wf_per_s"] = ratio(fleet["three_step_rounds"]["wf_per_s"], pa["wf_per_s"])
    if "three_step_alone" in peer:
        for kind in ("server", "client"):
            out[f"alone_{kind}_p50_ms"] = ratio(fleet["three_step_alone"][f"{kind}_p50_ms"],
                                                peer["three_step_alone"][f"{kind}_p50_ms"])
    for n, loop in fleet.get("loop", {}).items():
        theirs = peer.get("loop", {}).get(n)
        if theirs:
            out[f"loop_steps_per_s_n{n}"] = ratio(loop["steps_per_s"], theirs["steps_per_s"])
            # the fleet's own start->end (no completion polling); the peers' numbers are their drivers'
            out[f"loop_server_steps_per_s_n{n}"] = ratio(loop.get("server_steps_per_s"), theirs["steps_per_s"])
            if on_postgres:
                out[f"loop_write_xacts_per_step_n{n}"] = ratio(loop["cost_per_step"]["db"]["write_xacts"],
                                                               theirs["cost_per_step"]["db"]["write_xacts"])
            out[f"loop_cpu_ms_per_step_n{n}"] = ratio(loop["cost_per_step"]["cpu_ms"]["total"],
                                                      theirs["cost_per_step"]["cpu_ms"]["total"])
    return out


def noetl_ratios(section: dict) -> dict:
    """The fleet / NoETL's server, both with NoETL's worker (medians over the alternations)."""
    summary = section.get("summary", {})
    fleet, noetl = summary.get("fleet", {}), summary.get("noetl", {})

    def median(side: dict, key: str) -> float | None:
        return (side.get(key) or {}).get("median")

    return {key: ratio(median(fleet, key), median(noetl, key))
            for key in ("wf_per_s", "loop_steps_per_s", "loop_server_steps_per_s")}


# --- durability -----------------------------------------------------------------------------------

def durability_pairs(durability: dict) -> dict[str, bool | None]:
    """For each comparison: do its two sides have the same durability (None: a side is unknown)?"""
    def same(a: str, b: str) -> bool | None:
        da, db = durability.get(a), durability.get(b)
        return None if not da or not db else da.get("durable") == db.get("durable")

    return {"dbos": same("fleet", "dbos"), "restate": same("fleet", "restate"),
            "noetl_server": same("fleet_with_noetl_worker", "noetl_server")}


# --- targets (issue 24, item 2) -------------------------------------------------------------------

def _target(name: str, value: float | None, op: str, threshold: float, comparable: bool | None = True) -> dict:
    met = None if value is None else (value >= threshold if op == ">=" else value <= threshold)
    out = {"target": f"{name} {op} {threshold}", "value": value, "met": met}
    if comparable is False:
        out.update(met=False, invalid="the sides' durability differs")
    return out


INGEST_CPU_SIDES = ("router", "api-shard-0", "postgres")


def targets(report: dict) -> list[dict]:
    r, fleet, pairs = report["ratios"], report["fleet"], report["durability"]["same"]
    loops = fleet.get("loop", {})
    small, big = loops.get("100"), loops.get("5000")
    drift = None
    if small and big and not small["truncated"] and not big["truncated"]:
        rate = [loop.get("server_steps_per_s") or loop["steps_per_s"] for loop in (small, big)]
        drift = round(abs(rate[1] / rate[0] - 1), 3)
    alone = fleet.get("three_step_alone", {})
    ingest = fleet.get("ingest", {})
    per_event = ingest.get("cost_per_event", {}).get("cpu_ms", {})
    # The issue counts the router, the shard and Postgres (not the publisher, projector or driver).
    ingest_cpu = (round(sum(per_event[k] for k in INGEST_CPU_SIDES), 3)
                  if all(k in per_event for k in INGEST_CPU_SIDES) else None)
    return [
        _target("3-step 50 in flight, fleet/DBOS wf/s", r.get("dbos", {}).get("wf_per_s"), ">=", 1.3, pairs["dbos"]),
        _target("3-step 50 in flight, fleet/Restate wf/s", r.get("restate", {}).get("wf_per_s"), ">=", 1.3,
                pairs["restate"]),
        _target("3-step 50 in flight, fleet/NoETL server wf/s (NoETL's worker on both)",
                r.get("noetl_server", {}).get("wf_per_s"), ">=", 3.0, pairs["noetl_server"]),
        _target("loop n=1000, fleet/DBOS steps/s", r.get("dbos", {}).get("loop_steps_per_s_n1000"), ">=", 1.2,
                pairs["dbos"]),
        _target("loop n=1000, fleet/Restate steps/s", r.get("restate", {}).get("loop_steps_per_s_n1000"), ">=", 0.8,
                pairs["restate"]),
        _target("loop n=5000 vs n=100, |steps/s ratio - 1|", drift, "<=", 0.15),
        _target("3-step one at a time, fleet server p50 ms", alone.get("server_p50_ms"), "<=", 12.0),
        _target("3-step one at a time, fleet server p99 ms", alone.get("server_p99_ms"), "<=", 25.0),
        _target("ingest, fleet events/s", ingest.get("events_per_s"), ">=", 2500.0),
        _target("ingest, fleet p99 ms", ingest.get("p99_ms"), "<=", 30.0),
        _target("ingest, CPU ms per event (router + shard + Postgres)", ingest_cpu, "<=", 0.5),
    ]


# --- summary --------------------------------------------------------------------------------------

def cpu_line(cost: dict) -> str:
    parts = [f"{k}={v:.2f}" for k, v in cost["cpu_ms"].items() if k not in ("total", "driver") and v >= 0.005]
    return f"total={cost['cpu_ms']['total']:.2f}  " + " ".join(parts)


def _durability_line(name: str, d: dict | None) -> str:
    if not d:
        return f"  {name:24} unknown"
    shown = {k: v for k, v in d.items() if k not in ("durable", "note")}
    note = f"\n  {'':24} {d['note']}" if d.get("note") else ""
    return f"  {name:24} {'DURABLE' if d.get('durable') else 'NOT DURABLE'}  {shown}{note}"


def _speed(result: dict) -> str:
    """The machine's speed probe taken before a workload (hotpath_probes.speed_probe_ms), if any."""
    probe = result.get("speed_probe_ms")
    return f"  [speed probe {probe} ms]" if probe is not None else ""


def summary(report: dict) -> str:
    f, peers, r = report["fleet"], report["peers"], report["ratios"]
    sides = [("fleet", f)] + [(PEER_LABELS[name], side) for name, side in peers.items()]
    lines = [f"hot-path bench  {report['machine']['date']}  commit {report['machine']['git_commit'][:10]}  "
             f"cpus={report['machine']['cpus']}"]
    lines.append("\ndurability (every side; a comparison across different durability is NOT VALID)")
    for name, d in report["durability"]["sides"].items():
        lines.append(_durability_line(name, d))
    for pair, same in report["durability"]["same"].items():
        if same is False:
            lines.append(f"  !!! fleet vs {pair}: DURABILITY DIFFERS, its ratios are not a valid comparison")
    for name, side in peers.items():
        if "skipped" in side:
            lines.append(f"{PEER_LABELS[name]} peer SKIPPED: {side['skipped']}")
    lines.append("\nA  3-step, {} executions, {} in flight".format(f["three_step"]["executions"],
                                                                   f["three_step"]["in_flight"]))
    for name, side in sides:
        if "three_step" not in side:
            continue
        a = side["three_step"]
        per = a["cost_per_workflow"]
        lines.append(f"  {name:7} {a['wf_per_s']:7.1f} wf/s  server p50/p99 {a['server_p50_ms']}/{a['server_p99_ms']} ms"
                     f"  client p50/p99 {a['client_p50_ms']}/{a['client_p99_ms']} ms  ({a.get('start_pattern', 'lanes')})")
        if "invocation_p50_ms" in a:
            lines.append(f"          invocations' own created->completed p50/p99 {a['invocation_p50_ms']}/"
                         f"{a['invocation_p99_ms']} ms (stamped after its ingress queue)")
        commits = per["db"].get("xact_commit_less_idle", per["db"]["xact_commit"])
        if side.get("uses_postgres", True):
            lines.append(f"          per wf: write xacts {per['db']['write_xacts']:.2f} (per step "
                         f"{a['cost_per_step']['db']['write_xacts']:.2f}), commits {commits:.2f}, "
                         f"tup ins/upd/del {per['db']['tup_inserted']:.1f}/{per['db']['tup_updated']:.1f}/"
                         f"{per['db']['tup_deleted']:.1f}")
        lines.append(f"          CPU ms per wf: {cpu_line(per)}")
    if "three_step_rounds" in f:
        a = f["three_step_rounds"]
        lines.append(f"\nA2 3-step in DBOS's pattern (rounds of {a['in_flight']}, started one after another)")
        lines.append(f"  fleet   {a['wf_per_s']:7.1f} wf/s  server p50/p99 {a['server_p50_ms']}/{a['server_p99_ms']} ms"
                     f"  client p50/p99 {a['client_p50_ms']}/{a['client_p99_ms']} ms")
        if "three_step" in peers.get("dbos", {}):
            d = peers["dbos"]["three_step"]
            lines.append(f"  DBOS    {d['wf_per_s']:7.1f} wf/s  server p50/p99 {d['server_p50_ms']}/"
                         f"{d['server_p99_ms']} ms (workload A)")
    if "three_step_alone" in f:
        lines.append("\nA1 3-step, one at a time (latency without queueing)")
        for name, side in sides:
            if "three_step_alone" in side:
                a = side["three_step_alone"]
                lines.append(f"  {name:7} server p50/p99 {a['server_p50_ms']}/{a['server_p99_ms']} ms  "
                             f"client p50/p99 {a['client_p50_ms']}/{a['client_p99_ms']} ms{_speed(a)}")
    lines.append("\nB  sequential loop")
    for n, loop in f.get("loop", {}).items():
        row = f"  n={n:>5}  fleet {loop['steps_per_s']:7.1f} steps/s (server {loop.get('server_steps_per_s')})"
        stall = loop["stalls"]
        row += f" [{stall['count']} stalls >{stall['over_s']}s, {stall['seconds']} s in all]"
        if loop["truncated"]:
            row += f" (TRUNCATED: cancelled after {loop['wall_s']:.0f} s, {loop['steps_completed']} steps done)"
        lines.append(row)
        for name, side in sides:
            theirs = side.get("loop", {}).get(n)
            if not theirs:
                continue
            per = theirs["cost_per_step"]
            head = f"     {name:7} {theirs['steps_per_s']:7.1f} steps/s"
            if name != "fleet":
                head += f"  fleet/{name} {r.get(name.lower(), {}).get(f'loop_steps_per_s_n{n}')}"
            xacts = f"write xacts {per['db']['write_xacts']:.2f}, " if side.get("uses_postgres", True) else ""
            lines.append(f"{head}  per step: {xacts}CPU ms {cpu_line(per)}")
            if theirs.get("chunk_steps_per_s"):
                lines.append(f"             steps/s per tenth of the run: {theirs['chunk_steps_per_s']}")
    lines.append("  flatness (steps/s, largest complete n / smallest n): "
                 + "  ".join(f"{name} {side.get('loop_flatness')}" for name, side in sides if "loop" in side))
    if "ingest" in f:
        c = f["ingest"]
        per = c["cost_per_event"]
        lines.append(f"\nC  ingest: fleet {c['events_per_s']:.0f} events/s  p50/p99 {c['p50_ms']}/{c['p99_ms']} ms  "
                     f"per event: write xacts {per['db']['write_xacts']:.2f}, tup ins {per['db']['tup_inserted']:.2f}, "
                     f"CPU ms {cpu_line(per)}{_speed(c)}")
        lines.append(f"   CPU ceiling at this cost per event (all {report['machine']['cpus']} cores, no driver): "
                     f"{c.get('cpu_ceiling_events_per_s')} events/s")
    n = report.get("noetl_server")
    if n is not None:
        lines.append("\nN  NoETL's server vs the fleet, NoETL's worker on both (separate stacks, alternated)")
    if n is not None and "skipped" in n:
        lines.append(f"  SKIPPED: {n['skipped']}")
    elif n is not None:
        for side in ("noetl", "fleet"):
            s = n.get("summary", {}).get(side, {})
            med = {k: (s.get(k) or {}).get("median") for k in ("wf_per_s", "p50_ms", "p99_ms", "loop_steps_per_s")}
            lines.append(f"  {side:7} {s.get('valid_runs', 0)} valid runs: {med['wf_per_s']} wf/s  "
                         f"p50/p99 {med['p50_ms']}/{med['p99_ms']} ms  loop {med['loop_steps_per_s']} steps/s")
    for name, values in r.items():
        if values:
            lines.append(f"\nratios fleet/{name}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
    lines.append("\ntargets (issue 24, item 2)")
    for t in report["targets"]:
        verdict = {True: "met", False: "NOT MET", None: "not measured"}[t["met"]]
        extra = f"  ({t['invalid']})" if "invalid" in t else ""
        lines.append(f"  {verdict:12} {t['target']}: {t['value']}{extra}")
    return "\n".join(lines)
