"""`python -m noetl_api_shard`: one shard's HTTP API, configured from the environment."""

import sys

from noetl_common.config import ShardSettings
from noetl_common.service import run_service

from .app import SERVICE_NAME, create_app

if __name__ == "__main__":
    sys.exit(run_service(SERVICE_NAME, ShardSettings.from_env, create_app, shard=lambda s: str(s.shard_index),
                         describe=lambda s: f"shard {s.shard_index} of {s.shard_count}"))
