"""The hot-path bench's NoETL-server section: NoETL's own server with NoETL's own worker against the
fleet with that same worker, by ../shared/peers/noetl_server_bench.py (run unchanged, in a bench-only
virtualenv holding NoETL's package with all its dependencies: its server needs more than the worker
venv of tests/support/noetl_worker has). Each side starts its own stack, so this section runs after
the in-run peers, alternating the sides (`--sides noetl,fleet,...`)."""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import tempfile
from pathlib import Path

from noetl_devstack.postgres import PG_DURABILITY, postgres_verdict
from tests.support.noetl_worker import venv as worker_venv

from .peer_install import PeerUnavailable, ensure_venv, install_seconds

ROOT = Path(__file__).resolve().parents[1]

def settings_of_datadir(pgdata: Path) -> dict[str, str]:
    """The durability settings a stopped server ran with: its command line (postmaster.opts, where the
    embedded Postgres passes them) over its config files; Postgres' defaults (on) otherwise."""
    found = {name: "on" for name in PG_DURABILITY}
    for conf in ("postgresql.conf", "postgresql.auto.conf"):
        path = pgdata / conf
        for line in path.read_text().splitlines() if path.exists() else ():
            name, _, value = line.split("#", 1)[0].partition("=")
            if name.strip() in found and value.strip():
                found[name.strip()] = value.strip().strip("'")
    opts = pgdata / "postmaster.opts"
    words = shlex.split(opts.read_text()) if opts.exists() else []
    for flag, value in zip(words, words[1:]):
        name, _, setting = value.partition("=")
        if flag == "-c" and name in found:
            found[name] = setting
    return found


def pgdata_of(run: dict) -> Path | None:
    work = Path(run["workdir"])
    base = work / "pg" if run["side"] == "noetl" else work / "fleet-data" / "pg"
    return next((d for d in (base / "data", base / "pgserver") if (d / "PG_VERSION").exists()), None)


def ensure_noetl_venv() -> Path:
    """NoETL's package from the reference tree, installed from a writable copy (the tree may be read-only)."""
    reference = worker_venv.reference_dir()
    if not (reference / "pyproject.toml").exists():
        raise PeerUnavailable(f"NoETL's reference tree is not at {reference}")
    python = worker_venv.find_python()
    if python is None:
        raise PeerUnavailable("NoETL's server needs Python 3.12+ (none found)")
    with tempfile.TemporaryDirectory(prefix="noetl-src-") as tmp:
        source = shutil.copytree(reference, Path(tmp) / "src", ignore=shutil.ignore_patterns("__pycache__", ".venv"))
        return ensure_venv("noetl", [str(source)], python=python,
                           identity=f"noetl-reference {worker_venv.key(reference)}")


async def run_noetl_section(peers_dir: Path, work: Path, sides: list[str], total: int, in_flight: int,
                            loop: int, say=print) -> dict:
    script = peers_dir / "noetl_server_bench.py"
    if not script.exists():
        raise PeerUnavailable(f"{script} is missing")
    python = await asyncio.to_thread(ensure_noetl_venv)
    out = work / "noetl-server.json"
    argv = [str(python), str(script), "--fleet", str(ROOT), "--noetl-venv", str(python.parents[1]),
            "--noetl-src", str(worker_venv.reference_dir()), "--work", str(work / "noetl-server"),
            "--sides", ",".join(sides), "--total", str(total), "--in-flight", str(in_flight),
            "--loop", str(loop), "--json-out", str(out)]
    say(f"NoETL server section: {' '.join(sides)} ({total} executions, {in_flight} in flight, loop {loop}) ...")
    log = work / "logs" / "noetl-server-bench.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as stderr:
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL, stderr=stderr)
        code = await proc.wait()
    if not out.exists():
        raise PeerUnavailable(f"noetl_server_bench.py exited {code} without results; see {log}")
    doc = json.loads(out.read_text())
    durability: dict[str, dict] = {}
    for run in doc["runs"]:
        pgdata = pgdata_of(run)
        if pgdata is not None:
            verdict = postgres_verdict(settings_of_datadir(pgdata))
            if durability.setdefault(run["side"], verdict) != verdict:
                durability[run["side"]] = {"inconsistent_between_runs": True, "durable": False}
    return {"summary": doc.get("summary", {}), "runs": doc["runs"], "meta": doc.get("meta", {}),
            "exit_code": code, "durability": durability, "install_s": install_seconds(python.parents[1])}
