"""The execution area's per-app objects (created once in app.py, passed to handlers through the app)."""

from aiohttp import web

from .write.orchestration import Orchestrator
from .write.prompt_announce import PromptAnnouncer
from .write.wakeups import Wakeups

ANNOUNCER = web.AppKey("announcer", PromptAnnouncer)

ORCHESTRATOR = web.AppKey("orchestrator", Orchestrator)
WAKEUPS = web.AppKey("wakeups", Wakeups)
