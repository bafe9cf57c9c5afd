"""The execution area's per-app objects (created once in app.py, passed to handlers through the app)."""

from aiohttp import web

from .orchestration import Orchestrator
from .prompt_announce import PromptAnnouncer
from .wakeups import Wakeups

ANNOUNCER = web.AppKey("announcer", PromptAnnouncer)

ORCHESTRATOR = web.AppKey("orchestrator", Orchestrator)
WAKEUPS = web.AppKey("wakeups", Wakeups)
