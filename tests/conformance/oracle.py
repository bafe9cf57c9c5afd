"""NoETL's own server with NoETL's own worker as the oracle for a playbook whose intended outcome is
unclear: start that stack (../shared/peers/noetl_server_bench.py's NoetlStack, run unchanged, in the
bench-only virtualenv bench/peer_noetl.py installs), register the playbooks given, execute each,
and print how it ended there with the events NoETL recorded (`make noetl-oracle PLAYBOOKS=...`).

    python -m tests.conformance.oracle fixtures/playbooks/root_scripts/test_script_loading.yaml
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from bench.hotpath_peer import DEFAULT_PEERS_DIR
from bench.peer_noetl import ensure_noetl_venv
from tests.support.noetl_worker import venv as worker_venv

ROOT = Path(__file__).resolve().parents[2]


def load_peer_bench():
    spec = importlib.util.spec_from_file_location("noetl_server_bench", DEFAULT_PEERS_DIR / "noetl_server_bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def outcome(client: httpx.AsyncClient, url: str, eid: str, timeout: float) -> dict:
    """The execution's terminal status (or its last one at the deadline) and its events in order."""
    deadline = time.monotonic() + timeout
    status = "NOT_TERMINAL"
    while time.monotonic() < deadline:
        body = (await client.get(f"{url}/api/executions/{eid}/status")).json()
        # NoETL's server answers flags, not a status word.
        if body.get("failed") or body.get("completed"):
            status = "FAILED" if body.get("failed") else "COMPLETED"
            break
        await asyncio.sleep(0.5)
    events = (await client.get(f"{url}/api/executions/{eid}/events", params={"page_size": 500})).json()
    rows = [{"event_type": e.get("event_type"), "node_name": e.get("node_name"), "status": e.get("status"),
             "error": e.get("error")} for e in reversed(events.get("events", []))  # NoETL lists newest first
            if not str(e.get("event_type")).startswith("batch.")]
    return {"execution_id": eid, "status": status, "events": rows}


async def run(playbooks: list[Path], timeout: float, log_level: str) -> list[dict]:
    bench = load_peer_bench()
    python = await asyncio.to_thread(ensure_noetl_venv)
    with tempfile.TemporaryDirectory(prefix="noetl-oracle-") as work:
        args = argparse.Namespace(fleet=str(ROOT), noetl_venv=str(python.parents[1]),
                                  noetl_src=str(worker_venv.reference_dir()), noetl_log_level=log_level)
        stack = bench.NoetlStack(args, Path(work) / "noetl")
        try:
            await stack.start()
            async with httpx.AsyncClient(timeout=60) as client:
                for path in playbooks:  # every one registered first, as NoETL's regression runner does
                    await bench.register(stack, client, path.read_text())
                found = []
                for path in playbooks:
                    catalog_path = yaml.safe_load(path.read_text())["metadata"]["path"]
                    eid = await bench.execute(stack, client, catalog_path, {})
                    found.append({"playbook": str(path), **await outcome(client, stack.url, eid, timeout)})
            worker_log = Path(work) / "noetl" / "noetl-worker.log"
            if any(f["status"] != "COMPLETED" for f in found) and worker_log.exists():
                print(worker_log.read_text()[-3000:], file=sys.stderr)  # the worker's word on what failed
            return found
        finally:
            stack.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("playbooks", nargs="+", type=Path)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per execution")
    ap.add_argument("--log-level", default="INFO", help="LOG_LEVEL of NoETL's server and worker")
    a = ap.parse_args()
    e2e = ROOT.parent / "shared" / "e2e"
    paths = [(p if p.exists() else e2e / p).resolve() for p in a.playbooks]
    for item in asyncio.run(run(paths, a.timeout, a.log_level)):
        print(json.dumps(item, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
