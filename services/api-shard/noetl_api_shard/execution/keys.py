"""The execution area's per-app objects (created once in app.py, passed to handlers through the app)."""

from aiohttp import web

from .orchestration import Orchestrator
from .wakeups import Wakeups

ORCHESTRATOR = web.AppKey("orchestrator", Orchestrator)
WAKEUPS = web.AppKey("wakeups", Wakeups)
