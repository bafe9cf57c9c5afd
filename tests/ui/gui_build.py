"""NoETL's web UI built unchanged from its snapshot (NOETL_GUI, default ../shared/noetl-gui), once per
package-lock.json + package.json: `npm ci && npm run build` in a writable copy under .ui-cache/
(the snapshot may be read-only), the dist/ kept as .ui-cache/gui-<key>/dist.

    python -m tests.ui.gui_build      # prints the dist directory (builds it when missing)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".ui-cache"
SKIP = {"node_modules", "dist", ".git"}


def gui_source() -> Path:
    source = Path(os.environ.get("NOETL_GUI") or REPO.parent / "shared" / "noetl-gui").resolve()
    if not (source / "package-lock.json").is_file():
        raise SystemExit(f"NoETL's web UI not found at {source} (set NOETL_GUI to its directory)")
    return source


def build_key(source: Path) -> str:
    digest = hashlib.sha256()
    for name in ("package-lock.json", "package.json"):
        digest.update((source / name).read_bytes())
    return digest.hexdigest()[:16]


def built_dist(source: Path | None = None) -> Path:
    """The dist/ of this snapshot, built now if the cache does not hold it yet."""
    source = source or gui_source()
    target = CACHE / f"gui-{build_key(source)}"
    dist = target / "dist"
    if (dist / "index.html").is_file():
        return dist
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is required to build NoETL's web UI (make test-ui installs it as root)")
    CACHE.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="build-") as tmp:
        work = Path(tmp) / "gui"
        shutil.copytree(source, work, ignore=lambda _d, names: [n for n in names if n in SKIP])
        for step in ([npm, "ci", "--no-audit", "--no-fund"], [npm, "run", "build"]):
            print("+", " ".join(step[1:]), "in a copy of", source, file=sys.stderr)
            subprocess.run(step, cwd=work, check=True, stdout=sys.stderr)
        target.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(dist, ignore_errors=True)
        shutil.move(str(work / "dist"), dist)  # whole, or not at all: index.html checked above
    return dist


if __name__ == "__main__":
    print(built_dist())
