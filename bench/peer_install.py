"""Bench-only installs of the peers, made once from the registries (PyPI, npm) and cached under
bench/.peers/ (gitignored). A marker file records what was installed, so a changed pin installs
again and an unchanged one is reused; a failed install leaves no marker (the next run retries)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PEERS_HOME = BENCH_DIR / ".peers"


class PeerUnavailable(RuntimeError):
    """A peer that cannot be installed or started: the bench goes on without it."""


def _run(cmd: list[str], cwd: Path | None = None, timeout: float = 1200) -> None:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PeerUnavailable(f"{' '.join(cmd[:4])} ...: {exc}") from exc
    if done.returncode != 0:
        raise PeerUnavailable(f"{' '.join(cmd[:4])} ... failed: {(done.stderr or done.stdout).strip()[-400:]}")


def _cached(target: Path, wanted: dict) -> bool:
    marker = target / ".installed.json"
    try:
        return json.loads(marker.read_text()).get("wanted") == wanted
    except (OSError, ValueError):
        return False


def _mark(target: Path, wanted: dict, started: float) -> float:
    seconds = round(time.monotonic() - started, 1)
    (target / ".installed.json").write_text(json.dumps({"wanted": wanted, "install_s": seconds}) + "\n")
    return seconds


def install_seconds(target: Path) -> float | None:
    """How long the cached install took when it was made (for the report)."""
    try:
        return json.loads((target / ".installed.json").read_text()).get("install_s")
    except (OSError, ValueError):
        return None


def ensure_venv(name: str, packages: list[str], python: str = "python3", identity: str | None = None,
                log=print) -> Path:
    """The interpreter of bench/.peers/<name>, a virtualenv holding `packages` (pip specifiers or
    local paths; `identity` names what a local path holds, since its path may be temporary)."""
    target = PEERS_HOME / name
    wanted = {"python": python, "packages": [identity] if identity else packages}
    if _cached(target, wanted):
        return target / "bin" / "python"
    log(f"installing the {name} peer into {target} (once) ...")
    started = time.monotonic()
    shutil.rmtree(target, ignore_errors=True)
    _run([python, "-m", "venv", str(target)])
    _run([str(target / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", *packages])
    log(f"  {name} installed in {_mark(target, wanted, started)} s")
    return target / "bin" / "python"


def ensure_npm(name: str, package: str, log=print) -> Path:
    """bench/.peers/<name>, an npm project with `package` (name@version) installed."""
    target = PEERS_HOME / name
    wanted = {"npm": package}
    if _cached(target, wanted):
        return target
    if shutil.which("npm") is None:
        raise PeerUnavailable("npm is not installed (needed for the Restate server)")
    log(f"installing {package} into {target} (once) ...")
    started = time.monotonic()
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    _run(["npm", "init", "-y"], cwd=target)
    _run(["npm", "install", "--no-audit", "--no-fund", package], cwd=target)
    log(f"  {name} installed in {_mark(target, wanted, started)} s")
    return target
