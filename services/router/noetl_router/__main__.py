"""`python -m noetl_router`: the execution-id hashing router, configured from the environment."""

import sys

from noetl_common.service import run_service

from .app import SERVICE_NAME, create_app
from .config import RouterSettings

if __name__ == "__main__":
    sys.exit(run_service(SERVICE_NAME, RouterSettings.from_env, create_app,
                         describe=lambda s: f"router for {len(s.shard_urls)} shard(s)"))
