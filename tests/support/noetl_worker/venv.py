"""The virtualenv NoETL's own Python worker runs in, built once and cached.

NoETL's worker (`../shared/noetl-reference`, third-party, run unchanged) needs Python 3.12+, which a
machine may hold only under pyenv. The venv lives under the project's gitignored `.cache/`, keyed on
the reference tree's content and the pinned requirements next to this file, so a new snapshot or
pin builds a new one and an unchanged one is reused. The reference tree may be read-only (CI), so
the package is installed from a writable copy.

    python -m tests.support.noetl_worker.venv           # build if needed; print the venv's python
    python -m tests.support.noetl_worker.venv --check   # exit 1 (saying why) unless already built
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
REQUIREMENTS = Path(__file__).with_name("requirements.txt")
CACHE = ROOT / ".cache"
PREFIX = "noetl-worker-venv-"


def reference_dir() -> Path:
    return Path(os.environ.get("NOETL_REFERENCE_DIR", ROOT.parent / "shared" / "noetl-reference")).resolve()


def key(reference: Path) -> str:
    """Content of the reference tree (its files, by relative path) and of the pins."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes())
    for path in sorted(p for p in reference.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(reference)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def venv_dir(reference: Path) -> Path:
    return CACHE / f"{PREFIX}{key(reference)}"


def python_of(venv: Path) -> Path:
    return venv / "bin" / "python"


def cached(reference: Path) -> Path | None:
    """The venv's python when it is built for this reference tree."""
    venv = venv_dir(reference)
    return python_of(venv) if (venv / ".built").exists() else None


def _works(python: str) -> bool:
    try:
        return subprocess.run([python, "-c", "import sys, venv; sys.exit(sys.version_info < (3, 12))"],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def find_python() -> str | None:
    """A Python 3.12+: NOETL_WORKER_PYTHON, pyenv's (its shims refuse versions not selected), or on PATH."""
    candidates = [os.environ.get("NOETL_WORKER_PYTHON", "")]
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    for minor in ("12", "13"):
        candidates += sorted(glob.glob(f"{pyenv_root}/versions/3.{minor}.*/bin/python3.{minor}"), reverse=True)
        candidates.append(shutil.which(f"python3.{minor}") or "")
    return next((c for c in candidates if c and _works(c)), None)


def build(reference: Path, log=print) -> Path:
    if not (reference / "pyproject.toml").exists():
        raise SystemExit(f"NoETL's reference tree is not at {reference} (set NOETL_REFERENCE_DIR)")
    found = cached(reference)
    if found is not None:
        return found
    python = find_python()
    if python is None:
        raise SystemExit("NoETL's worker needs Python 3.12+: none found (pyenv versions, python3.12/3.13 on "
                         "PATH); install one or set NOETL_WORKER_PYTHON")
    target = venv_dir(reference)
    CACHE.mkdir(exist_ok=True)
    started = time.monotonic()
    log(f"building NoETL's worker venv with {python} into {target} ...")
    with tempfile.TemporaryDirectory(prefix=PREFIX, dir=CACHE) as work:
        source = Path(work) / "src"
        # A venv is not relocatable (its scripts name its path): built at the target path, which a
        # failed build leaves without `.built` (the next build starts it over).
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run([python, "-m", "venv", str(target)], check=True)
        shutil.copytree(reference, source, ignore=shutil.ignore_patterns("__pycache__", ".venv"))
        pip = [str(python_of(target)), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
        subprocess.run([*pip, "--no-deps", str(source)], check=True)
    (target / ".built").write_text(f"{reference}\n")
    for old in CACHE.glob(f"{PREFIX}*"):
        if old != target and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)  # venvs of earlier snapshots or pins
    log(f"built in {time.monotonic() - started:.0f}s")
    return python_of(target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.noetl_worker.venv", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only say whether it is built")
    args = parser.parse_args(argv)
    reference = reference_dir()
    if args.check:
        found = cached(reference) if (reference / "pyproject.toml").exists() else None
        print(found or f"not built for {reference} (make noetl-worker-venv)")
        return 0 if found else 1
    print(build(reference, log=lambda m: print(m, file=sys.stderr, flush=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
