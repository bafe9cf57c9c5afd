"""NoETL's web UI (built unchanged, tests/ui/gui_build.py) served from dist/ on loopback with a
generated /env-config.js (direct mode at the router, skip-auth allowed), against a fleet started as
`make run` starts it, driven by Debian's headless Chromium through Playwright. Every page records
what went wrong in the browser (a response >= 400, a failed request, a console error, an uncaught
exception); a test fails on any. Screenshots go to .ui-cache/screenshots/."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from tests.integration.fleet.conftest import LiveFleet, own_fleet

from .gui_build import CACHE, built_dist

CHROMIUM = os.environ.get("NOETL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = CACHE / "screenshots"
# The worker notices a cancelled step at its next keepalive: twice a second here.
FLEET_ENV = {"NOETL_WORKER_PROGRESS_SECONDS": "0.5"}

pytestmark = pytest.mark.ui


def env_config(router: str) -> str:
    """What NoETL's docker/env.sh writes: the UI calls the router directly, no gateway."""
    env = {"VITE_API_MODE": "direct", "VITE_API_BASE_URL": router, "VITE_ALLOW_SKIP_AUTH": "true"}
    return f"window.__NOETL_ENV__ = {json.dumps(env)};\n"


def gui_app(dist: Path, router: str) -> web.Application:
    """dist/ as nginx serves it for the UI: files as they are, any other path the SPA's index.html."""
    async def serve(request: web.Request) -> web.StreamResponse:
        if request.path == "/env-config.js":
            return web.Response(text=env_config(router), content_type="application/javascript")
        candidate = (dist / request.path.lstrip("/")).resolve()
        if candidate.is_file() and candidate.is_relative_to(dist):
            return web.FileResponse(candidate)
        return web.FileResponse(dist / "index.html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", serve)
    return app


@pytest.fixture(scope="package")
def gui_dist() -> Path:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: make test-ui installs Debian's chromium as root")
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    return built_dist()


@pytest_asyncio.fixture(scope="package")
async def fleet() -> AsyncIterator[LiveFleet]:
    async with own_fleet("noetl-ui-test-", 2, extra_env=FLEET_ENV) as live:
        yield live


@pytest_asyncio.fixture(scope="package")
async def gui_url(gui_dist: Path, fleet: LiveFleet) -> AsyncIterator[str]:
    runner = web.AppRunner(gui_app(gui_dist, fleet.router), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture(scope="package")
async def browser_context(gui_url: str):
    """One logged-in browser session for the package: the login page's "Continue without
    Authentication" (skip-auth at a loopback router), as a person starts it."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = await browser.new_context(viewport={"width": 1600, "height": 1000})
        page = await context.new_page()
        await page.goto(f"{gui_url}/login")
        await page.get_by_role("button", name="Continue without Authentication").click()
        await page.wait_for_url(lambda url: "/login" not in url)
        await page.close()
        try:
            yield context
        finally:
            await context.close()
            await browser.close()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session
