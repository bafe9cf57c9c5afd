"""`python -m noetl_outbox_publisher`: relays the shards' outboxes to NATS JetStream."""

import sys

from noetl_common.service import run_service

from .app import create_app
from .config import from_env

if __name__ == "__main__":
    sys.exit(run_service("outbox-publisher", from_env, create_app,
                         describe=lambda s: f"publisher for shards {sorted(s.shard_urls)}"))
