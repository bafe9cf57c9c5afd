from pathlib import Path

import pytest

from noetl_deploy.render import load_values, render_all

REPO = Path(__file__).resolve().parents[3]
VALUES = REPO / "deploy" / "values.yaml"
TEMPLATES = REPO / "deploy" / "templates"
README = REPO / "deploy" / "README.md"


@pytest.fixture(scope="session")
def values():
    return load_values(VALUES)


@pytest.fixture(scope="session")
def rendered3(tmp_path_factory):
    """Both overlays for 3 shards, rendered and written once under a temporary directory."""
    out = tmp_path_factory.mktemp("deploy") / "rendered"
    return render_all(VALUES, out, shards=3, templates_dir=TEMPLATES), out
