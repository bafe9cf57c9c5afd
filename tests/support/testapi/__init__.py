"""A local stand-in for the e2e suite's paginated test API (`fixtures/servers/paginated_api.py` in
noetl/e2e), written from the behaviour its playbooks rely on: paginated endpoints (page, offset,
cursor), failure injection for retries (flaky, errors, rate-limited), heavy payloads, reference
chains and the concurrency probe. `python -m tests.support.testapi` serves it (NOETL_HTTP_PORT)."""

from .app import build_app

__all__ = ["build_app"]
