"""python -m noetl_deploy --shards 3 --values deploy/values.yaml --out deploy/rendered

Renders the dev and prod overlays into <out>/<overlay>/*.yaml, writes the Grafana dashboard JSON
(default <out>/../dashboards/noetl-shards.json), validates every manifest strictly, and prints
what it wrote. Exit status 1 (with the reasons on stderr) if anything fails.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from noetl_deploy.render import DASHBOARD_FILE, OVERLAYS, RenderError, render_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m noetl_deploy", description=__doc__.splitlines()[2])
    parser.add_argument("--shards", type=int, default=None, help="number of api-shards (overrides values)")
    parser.add_argument("--values", default="deploy/values.yaml", help="values file (default: %(default)s)")
    parser.add_argument("--out", default="deploy/rendered", help="output directory (default: %(default)s)")
    parser.add_argument("--templates", default=None, help="templates directory (default: <values dir>/templates)")
    parser.add_argument("--overlay", action="append", choices=OVERLAYS,
                        help="render only this overlay (repeatable; default: all)")
    parser.add_argument("--dashboard-out", default=None,
                        help=f"dashboard JSON path (default: <out>/../dashboards/{DASHBOARD_FILE})")
    parser.add_argument("--no-validate", action="store_true", help="skip the strict schema check")
    args = parser.parse_args(argv)

    overlays = tuple(args.overlay) if args.overlay else OVERLAYS
    try:
        results = render_all(args.values, args.out, shards=args.shards, templates_dir=args.templates,
                             overlays=overlays, dashboard_path=args.dashboard_out)
    except RenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    failed = False
    if not args.no_validate:
        try:
            from noetl_deploy.schemas import validate_documents
        except ImportError as exc:  # the kubernetes client is an optional dependency
            print(f"warning: not validating ({exc}); pip install kubernetes", file=sys.stderr)
        else:
            for overlay, rendered in results.items():
                problems = validate_documents(rendered.documents)
                for problem in problems:
                    print(f"invalid [{overlay}] {problem}", file=sys.stderr)
                failed = failed or bool(problems)

    out = Path(args.out)
    for overlay, rendered in results.items():
        shards = next(iter(rendered.find("StatefulSet", "api-shard")))["spec"]["replicas"]
        print(f"{overlay} ({shards} shards):")
        for fname, docs in rendered.files.items():
            kinds = ", ".join(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
            print(f"  {out / overlay / fname}: {kinds}")
    dashboard = Path(args.dashboard_out) if args.dashboard_out else out.parent / "dashboards" / DASHBOARD_FILE
    print(f"dashboard: {dashboard}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
