"""`python -m noetl_worker`: the reference worker, configured from the environment."""

import sys

from noetl_common.service import run_service

from .app import create_app
from .config import from_env

if __name__ == "__main__":
    sys.exit(run_service("worker", from_env, create_app))
