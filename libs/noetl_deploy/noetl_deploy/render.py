"""Render the fleet's Kubernetes manifests from one values file and a directory of templates.

Layout (defaults relative to the values file):

    deploy/values.yaml              defaults + `overlays.<name>` deep-merged over them
    deploy/templates/*.yaml.j2      one template per component; files starting with `_` are
                                    helpers (macros), imported by the others, never rendered alone
    deploy/dashboards/*.json        written by the renderer too (the Grafana dashboard)

Each template renders to zero or more YAML documents; the renderer parses every document (a
template that produces invalid YAML fails loudly, naming the template), drops empty ones, and
writes the rest as one multi-document file `<out>/<overlay>/<template name minus .j2>`. A
template that renders nothing for an overlay (e.g. in-cluster Postgres in prod) writes no file.

Template context: `v` (merged values), `overlay`, `shards`, `namespace`, `dashboard_json` and the
helper functions `fqdn(service)` and `image()`.
"""

from __future__ import annotations

import copy
import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import minijinja
import yaml

from noetl_deploy.dashboard import build_dashboard

OVERLAYS = ("dev", "prod")
DASHBOARD_FILE = "noetl-shards.json"


class RenderError(Exception):
    """A values file, template or rendered document is wrong; the message says which."""


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; any other value in `over` replaces the one in `base`."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_values(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RenderError(f"cannot read values file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise RenderError(f"values file {path} must be a mapping at the top level")
    return data


def overlay_values(values: dict[str, Any], overlay: str, shards: int | None = None) -> dict[str, Any]:
    """The values one overlay renders with: defaults, the overlay merged over them, `shards` set."""
    overlays = values.get("overlays") or {}
    if overlay not in overlays:
        raise RenderError(f"overlay {overlay!r} is not in the values file (have: {sorted(overlays)})")
    base = {k: v for k, v in values.items() if k != "overlays"}
    merged = deep_merge(base, overlays[overlay] or {})
    if shards is not None:
        merged["shards"] = shards
    count = merged.get("shards")
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 1024:
        raise RenderError(f"shards must be an integer between 1 and 1024, got {count!r}")
    _check_networks((merged.get("router") or {}).get("trusted_networks"))
    merged["overlay"] = overlay
    return merged


def _check_networks(networks: Any) -> None:
    """router.trusted_networks: a list of CIDRs (the router would refuse to start on a bad one)."""
    if networks is None:
        return
    if not isinstance(networks, list):
        raise RenderError(f"router.trusted_networks must be a list of CIDRs, got {networks!r}")
    for item in networks:
        try:
            ipaddress.ip_network(str(item), strict=False)
        except ValueError:
            raise RenderError(f"router.trusted_networks: {item!r} is not a CIDR (e.g. 10.244.0.0/16)") from None


def _environment(templates_dir: Path) -> tuple[minijinja.Environment, list[str]]:
    sources = {p.name: p.read_text() for p in sorted(templates_dir.glob("*.j2"))}
    if not sources:
        raise RenderError(f"no *.j2 templates in {templates_dir}")
    env = minijinja.Environment(templates=sources)
    env.trim_blocks = True
    env.lstrip_blocks = True
    env.keep_trailing_newline = True
    env.undefined_behavior = "strict"  # a typo in a values key fails the render, not the cluster
    env.auto_escape_callback = lambda _name: None
    renderable = [name for name in sources if name.endswith(".yaml.j2") and not name.startswith("_")]
    return env, renderable


@dataclass
class Rendered:
    """What one overlay rendered: file name -> documents, plus the dashboard."""

    overlay: str
    files: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    dashboard: dict[str, Any] = field(default_factory=dict)

    @property
    def documents(self) -> list[dict[str, Any]]:
        return [doc for docs in self.files.values() for doc in docs]

    def find(self, kind: str, name: str | None = None) -> list[dict[str, Any]]:
        return [d for d in self.documents
                if d.get("kind") == kind and (name is None or d.get("metadata", {}).get("name") == name)]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        found = self.find(kind, name)
        if len(found) != 1:
            raise KeyError(f"expected one {kind}/{name} in overlay {self.overlay}, found {len(found)}")
        return found[0]


def render_overlay(values: dict[str, Any], overlay: str, templates_dir: str | Path,
                   shards: int | None = None) -> Rendered:
    """Render every template for one overlay in memory (nothing is written)."""
    v = overlay_values(values, overlay, shards)
    env, names = _environment(Path(templates_dir))
    dashboard = build_dashboard()
    namespace = v["namespace"]
    domain = v.get("cluster_domain", "cluster.local")
    context = {
        "v": v,
        "overlay": overlay,
        "shards": v["shards"],
        "namespace": namespace,
        "dashboard_json": json.dumps(dashboard, indent=2, sort_keys=True),
        "fqdn": lambda service: f"{service}.{namespace}.svc.{domain}",
        "image": lambda: f"{v['image']['repository']}:{v['image']['tag']}",
    }
    result = Rendered(overlay=overlay, dashboard=dashboard)
    for name in names:
        try:
            text = env.render_template(name, **context)
        except Exception as exc:  # minijinja raises TemplateError subclasses of Exception
            raise RenderError(f"{overlay}: template {name} failed to render: {exc}") from exc
        try:
            docs = [d for d in yaml.safe_load_all(text) if d]
        except yaml.YAMLError as exc:
            raise RenderError(f"{overlay}: template {name} rendered invalid YAML: {exc}") from exc
        for doc in docs:
            if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
                raise RenderError(f"{overlay}: template {name} rendered a document without kind/apiVersion")
        if docs:
            result.files[name[: -len(".j2")]] = docs
    return result


class _Dumper(yaml.SafeDumper):
    """Block style, and multi-line strings (scripts, config files) as literal `|` blocks."""


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data and not any(line != line.rstrip() for line in data.splitlines()) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_representer)


def dump_documents(docs: list[dict[str, Any]]) -> str:
    return yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def write_rendered(rendered: Rendered, out_dir: str | Path) -> list[Path]:
    """Write one overlay's files under <out_dir>/<overlay>/, replacing stale *.yaml there."""
    target = Path(out_dir) / rendered.overlay
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob("*.yaml"):
        if stale.name not in rendered.files:
            stale.unlink()
    written = []
    for fname, docs in rendered.files.items():
        path = target / fname
        path.write_text(dump_documents(docs))
        written.append(path)
    return written


def write_dashboard(dashboard: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dashboard, indent=2, sort_keys=True) + "\n")
    return path


def render_all(values_path: str | Path, out_dir: str | Path, shards: int | None = None,
               templates_dir: str | Path | None = None, overlays: tuple[str, ...] = OVERLAYS,
               dashboard_path: str | Path | None = None) -> dict[str, Rendered]:
    """Render and write every overlay; also write the dashboard JSON.

    templates_dir defaults to <values dir>/templates; dashboard_path to
    <parent of out_dir>/dashboards/noetl-shards.json (deploy/rendered -> deploy/dashboards).
    """
    values = load_values(values_path)
    templates = Path(templates_dir) if templates_dir else Path(values_path).parent / "templates"
    results: dict[str, Rendered] = {}
    for overlay in overlays:
        results[overlay] = render_overlay(values, overlay, templates, shards)
    for rendered in results.values():
        write_rendered(rendered, out_dir)
    if results:
        target = Path(dashboard_path) if dashboard_path else Path(out_dir).parent / "dashboards" / DASHBOARD_FILE
        write_dashboard(next(iter(results.values())).dashboard, target)
    return results
