"""`python -m noetl_projector`: folds published events into the shards' read models."""

import sys

from noetl_common.service import run_service

from .app import create_app
from .config import from_env

if __name__ == "__main__":
    sys.exit(run_service("projector", from_env, create_app,
                         describe=lambda s: f"projector for shards {sorted(s.shard_urls)}"))
