"""NoETL's own web UI, page by page, against the fleet: what each page shows is checked against
what the API answers, and no page may log a failed request, a console error or an exception.

Pages: the catalog (cards, the Run dialog drawn from ui_schema, View as a flow), the executions
list (durations, Stop), an execution's detail (events newest first with durations, Cancel), the
credentials (list, View data)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import aiohttp
import pytest

from .conftest import SHOTS

pytestmark = pytest.mark.ui

TYPED = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata:
  name: typed
  path: tests/ui/typed
  description: Says hello a number of times
workload:
  times: 3          # ui:description=How many times
  ratio: 0.5
  name: hi
  loud: false
  mode: calm        # ui:enum=[calm, loud]
workflow:
  - step: start
    tool:
      kind: python
      input: {times: "{{ workload.times }}", name: "{{ workload.name }}"}
      code: "result = {'said': ' '.join([name] * int(times)), 'times_type': type(times).__name__}"
    next: {arcs: [{step: shout}]}
  - step: shout
    tool: {kind: python, code: "result = {'done': True}"}
    next: {arcs: [{step: end}]}
  - step: end
"""
SLOW = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: slow, path: tests/ui/slow}
workflow:
  - step: start
    tool: {kind: python, code: "import time\\nfor _ in range(6000):\\n    time.sleep(0.1)\\nresult = {}"}
"""
SECRET = {"username": "ui-user", "password": "ui-s3cret"}


class Recorder:
    """Everything that went wrong on one page, as the browser saw it."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.failures: list[str] = []
        page.on("response", self._response)
        page.on("requestfailed", lambda r: self.failures.append(f"request failed: {r.method} {r.url} {r.failure}"))
        page.on("console", lambda m: m.type == "error" and self.failures.append(f"console error: {m.text}"))
        page.on("pageerror", lambda e: self.failures.append(f"page error: {e}"))

    def _response(self, response: Any) -> None:
        if response.status >= 400:
            self.failures.append(f"{response.status} {response.request.method} {response.url}")

    async def shot(self, name: str) -> None:
        await self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def assert_clean(self) -> None:
        assert not self.failures, "the browser saw failures:\n" + "\n".join(self.failures)


@asynccontextmanager
async def opened(context: Any, url: str, name: str) -> AsyncIterator[Recorder]:
    page = await context.new_page()
    recorder = Recorder(page)
    try:
        await page.goto(url)
        yield recorder
        await recorder.shot(name)
    except BaseException:
        await recorder.shot(f"{name}-failed")
        raise
    finally:
        await page.close()
    recorder.assert_clean()


async def api(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Any:
    async with http.request(method, url, **kwargs) as r:
        body = await r.json()
        assert r.status < 300, (method, url, r.status, body)
        return body


async def until(check: Any, what: str, timeout: float = 60) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


@pytest.fixture(scope="package")
async def catalog(fleet, gui_url) -> dict[str, dict]:
    """The playbooks and the credential the pages show, registered through the router."""
    async with aiohttp.ClientSession() as http:
        entries = {}
        for text in (TYPED, SLOW):
            body = await api(http, "POST", f"{fleet.router}/api/catalog/register",
                             json={"content": base64.b64encode(text.encode()).decode()})
            entries[body["path"]] = body
        await api(http, "POST", f"{fleet.router}/api/credentials",
                  json={"name": "ui_cred", "type": "postgres", "data": SECRET, "description": "for the UI test"})
    return entries


async def status_of(http: aiohttp.ClientSession, router: str, execution_id: str) -> str:
    return (await api(http, "GET", f"{router}/api/executions/{execution_id}/status"))["status"]


async def start_slow(http: aiohttp.ClientSession, router: str) -> str:
    execution_id = (await api(http, "POST", f"{router}/api/execute", json={"path": "tests/ui/slow"}))["execution_id"]

    async def running() -> bool:
        events = (await api(http, "GET", f"{router}/api/executions/{execution_id}/events"))["events"]
        return any(e["event_type"] == "command.started" for e in events)

    await until(running, "the slow step to start")
    return execution_id


async def test_catalog_cards_show_each_playbook_with_its_registration_date(browser_context, gui_url, catalog, fleet,
                                                                          http):
    listed = (await api(http, "POST", f"{fleet.router}/api/catalog/list", json={"resource_type": "Playbook"}))["entries"]
    async with opened(browser_context, f"{gui_url}/catalog", "catalog") as rec:
        cards = rec.page.locator(".catalog-playbook-card")
        await cards.first.wait_for()
        assert await cards.count() == len(listed) == 2
        for entry in listed:
            card = cards.filter(has_text=f"Path: {entry['path']}")
            text = await card.inner_text()
            assert f"Version: {entry['version']}" in text and "Updated: -" not in text, text
            assert re.search(r"Updated:\s*\d", text), text


async def test_run_dialog_has_typed_fields_sends_numbers_and_shows_the_result(browser_context, gui_url, catalog,
                                                                              fleet, http):
    async with opened(browser_context, f"{gui_url}/catalog", "run-dialog") as rec:
        page = rec.page
        card = page.locator(".catalog-playbook-card").filter(has_text="Path: tests/ui/typed")
        await card.locator('[data-pw="catalog.run-with-form"]').click()
        dialog = page.locator(".playbook-run-dialog")
        await dialog.locator(".playbook-run-dialog-form").wait_for()
        await rec.shot("run-dialog-form")
        # Each field drawn for its kind: number boxes, a switch, a select, a text box.
        assert await dialog.get_by_role("spinbutton").count() == 2          # times, ratio
        assert await dialog.get_by_role("switch").count() == 1             # loud
        assert await dialog.locator(".ant-select").count() == 1            # mode (enum)
        assert await dialog.locator("input[type=text]:not([role])").count() == 1  # name
        assert "How many times" in await dialog.inner_text()
        assert await dialog.get_by_role("spinbutton").first.input_value() == "3"

        async with page.expect_request(lambda r: r.url.endswith("/api/execute") and r.method == "POST") as sent:
            await dialog.get_by_role("button", name="Run").click()
        body = json.loads((await sent.value).post_data or "{}")
        assert body["workload"]["times"] == 3 and body["workload"]["ratio"] == 0.5 and body["workload"]["loud"] is False
        assert body["workload"]["name"] == "hi" and body["workload"]["mode"] == "calm"

        panel = dialog.locator(".playbook-run-dialog-result")
        await panel.get_by_text("COMPLETED").wait_for(timeout=60_000)
        execution_id = (await panel.locator("code").inner_text()).strip()
        detail = await api(http, "GET", f"{fleet.router}/api/executions/{execution_id}")
        assert detail["status"] == "COMPLETED"
        shown = await panel.locator(".playbook-run-dialog-result-text").inner_text()
        # The panel shows the execution's result, not a command's context.
        assert json.loads(shown) == detail["result"] and '"tool"' not in shown


async def test_execution_detail_lists_events_newest_first_with_durations(browser_context, gui_url, catalog, fleet,
                                                                         http):
    execution_id = (await api(http, "POST", f"{fleet.router}/api/execute",
                              json={"path": "tests/ui/typed", "workload": {"times": 2}}))["execution_id"]
    await until(lambda: _terminal(http, fleet.router, execution_id), "the execution to finish")
    events = (await api(http, "GET", f"{fleet.router}/api/executions/{execution_id}/events"))["events"]
    ids = [int(e["event_id"]) for e in events]
    assert ids == sorted(ids, reverse=True) and events[-1]["event_type"] == "playbook.initialized"
    timed = {e["event_type"] for e in events if e["duration"] and e["duration"] > 0}
    assert {"step.exit", "playbook.completed"} <= timed, timed
    async with opened(browser_context, f"{gui_url}/execution/{execution_id}", "execution-detail") as rec:
        rows = rec.page.locator(".ant-table-tbody tr.ant-table-row")

        async def all_rows() -> list[list[str]] | None:  # one page of the table holds them all
            texts = [await row.locator("td").all_inner_texts() for row in await rows.all()]
            return texts if len(texts) == len(events) else None

        shown = await until(all_rows, "the events table")
        await rows.first.scroll_into_view_if_needed()  # for the screenshot
        # Newest first, as the API answers, each with its duration (ms; "-" for 0).
        assert [(r[0], r[1]) for r in shown] == [(e["event_type"], e["node_name"]) for e in events[:len(shown)]]
        for row, event in zip(shown, events):
            assert (row[4] == "-") == (not event["duration"]), (row, event)
        assert any(r[0] == "playbook.completed" and r[4] != "-" for r in shown), shown


async def _terminal(http: aiohttp.ClientSession, router: str, execution_id: str) -> bool:
    return await status_of(http, router, execution_id) in ("COMPLETED", "FAILED", "CANCELLED")


async def test_executions_list_shows_running_durations_and_stop_cancels(browser_context, gui_url, catalog, fleet,
                                                                        http):
    execution_id = await start_slow(http, fleet.router)
    listed = {e["execution_id"]: e for e in await api(http, "GET", f"{fleet.router}/api/executions")}
    assert listed[execution_id]["status"] == "RUNNING" and listed[execution_id]["duration_seconds"] is not None
    async with opened(browser_context, f"{gui_url}/execution", "executions") as rec:
        row = rec.page.locator("tr.ant-table-row").filter(has_text=execution_id)
        await row.wait_for()
        await rec.shot("executions-running")
        async with rec.page.expect_response(lambda r: r.url.endswith(f"/api/executions/{execution_id}/stop")) as stop:
            await row.get_by_role("button", name="Stop").click()
        assert (await stop.value).status == 200
        await until(lambda: _is(http, fleet.router, execution_id, "CANCELLED"), "Stop to cancel the execution")
        await row.get_by_text(re.compile("cancelled", re.I)).wait_for()


async def _is(http: aiohttp.ClientSession, router: str, execution_id: str, status: str) -> bool:
    return await status_of(http, router, execution_id) == status


async def test_execution_detail_cancel(browser_context, gui_url, catalog, fleet, http):
    execution_id = await start_slow(http, fleet.router)
    async with opened(browser_context, f"{gui_url}/execution/{execution_id}", "execution-cancel") as rec:
        async with rec.page.expect_response(lambda r: r.url.endswith(f"/api/executions/{execution_id}/cancel")) as sent:
            await rec.page.get_by_role("button", name="Cancel Execution").click()
        assert (await sent.value).status == 200
        await until(lambda: _is(http, fleet.router, execution_id, "CANCELLED"), "Cancel to cancel the execution")
        await rec.page.get_by_text("Execution cancelled successfully").wait_for()


async def test_catalog_view_draws_the_playbooks_flow(browser_context, gui_url, catalog, fleet, http):
    steps = ["start", "shout", "end"]
    async with opened(browser_context, f"{gui_url}/catalog", "flow") as rec:
        card = rec.page.locator(".catalog-playbook-card").filter(has_text="Path: tests/ui/typed")
        async with rec.page.expect_response(lambda r: "/api/catalog/playbook/content" in r.url) as content:
            await card.get_by_role("button", name="View").click()
        response = await content.value
        assert response.status == 200
        assert (await response.json())["content"] == (
            await api(http, "POST", f"{fleet.router}/api/catalog/resource", json={"path": "tests/ui/typed"}))["content"]
        # One node per step, keyed by the step's name (the template flow's are demo-1, demo-2, ...).
        # The nodes' captions read "(no task name)": NoETL's node components read data.name while its
        # FlowVisualization hands them data.task, whatever the server.
        nodes = rec.page.locator(".react-flow__node")
        await nodes.first.wait_for()
        assert [await nodes.nth(i).get_attribute("data-id") for i in range(await nodes.count())] == steps
        assert await rec.page.locator(".react-flow__edge").count() == len(steps) - 1


async def test_credentials_list(browser_context, gui_url, catalog, fleet, http):
    listed = (await api(http, "GET", f"{fleet.router}/api/credentials"))["items"]
    async with opened(browser_context, f"{gui_url}/credentials", "credentials") as rec:
        cards = rec.page.locator(".credentials-credential-card")
        await cards.first.wait_for()
        assert await cards.count() == len(listed) == 1
        text = await cards.first.inner_text()
        assert "ui_cred" in text and "postgres" in text.lower() and SECRET["username"] not in text


async def test_credentials_view_data(browser_context, gui_url, catalog, fleet, http):
    async with opened(browser_context, f"{gui_url}/credentials", "credentials-data") as rec:
        card = rec.page.locator(".credentials-credential-card").filter(has_text="ui_cred")
        await card.get_by_role("button", name="View").click()
        # The UI masks a password's value and shows the rest.
        await card.locator(".credentials-data-card").get_by_text(SECRET["username"]).wait_for(timeout=10_000)
