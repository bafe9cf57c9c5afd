"""The worker loop against real NATS JetStream and a stand-in control plane: claim, events in
order, ack only after the outcome is taken, skips, redelivery after outages, shutdown."""

from __future__ import annotations

import asyncio
import time

from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from noetl_devstack.ports import free_port
from noetl_worker.client import Backoff
from noetl_worker.executor import default_runners
from noetl_worker.runtime import Worker, WorkerMetrics

from .conftest import StandIn
from .harness import Harness, python_command, until


async def test_claim_started_done_completed_in_order_then_ack(stand_in, nats_url):
    plane, server = stand_in
    python_command(plane, 101, 9001, "print('working')\nresult = {'sum': a + b}", {"a": 2, "b": 3}, step="add")
    async with Harness(nats_url, str(server.make_url(""))) as h:
        h.start()
        await h.publish(9001, 101, "add")
        await h.settled()
        assert plane.log[0] == ("claim", 101) and plane.claims(101) == 1
        assert plane.events(101) == ["command.started", "call.done", "command.completed"]
        done = plane.payloads("call.done")[0]
        assert done["result"] == {"sum": 5} and done["stdout"] == "working\n" and done["command_id"] == "101"
        assert plane.keys[0].endswith(":started") and plane.keys[1].endswith(":ok")
        await until(lambda: any(a == "register" for a, _ in plane.pool_calls), what="pool registration")
        await until(lambda: any(a == "heartbeat" for a, _ in plane.pool_calls), what="pool heartbeat")
        reg = next(b for a, b in plane.pool_calls if a == "register")
        assert reg["name"] == h.worker.settings.worker_id and reg["labels"] == {"pool_name": h.pool}
        assert h.metrics.commands.labels("python", "ok")._value.get() == 1
        assert h.metrics.claims.labels("claimed")._value.get() == 1
    assert ("deregister", {"name": h.worker.settings.worker_id}) in plane.pool_calls


async def test_tool_failure_reports_call_error_and_command_failed(stand_in, nats_url):
    plane, server = stand_in
    python_command(plane, 102, 9002, "raise ValueError('bad input')")
    plane.commands[103] = {"execution_id": 9002, "step": "t", "action": "teleport", "context": {}}
    async with Harness(nats_url, str(server.make_url(""))) as h:
        h.start()
        await h.publish(9002, 102)
        await h.publish(9002, 103)
        await h.settled()
        await until(lambda: len(plane.events(103)) == 3 and len(plane.events(102)) == 3)
    assert plane.events(102) == ["command.started", "call.error", "command.failed"]
    errors = [p["error"] for p in plane.payloads("command.failed")]
    assert any("ValueError: bad input" in e for e in errors)
    assert any("no runner for tool kind 'teleport'" in e for e in errors)


async def test_active_claim_is_skipped_and_acked(stand_in, nats_url):
    plane, server = stand_in
    python_command(plane, 104, 9003, "result = 1")
    plane.claim_answers[104] = [(409, {"code": "active_claim", "message": "Command already claimed by other"},
                                 {"Retry-After": "2"})]
    async with Harness(nats_url, str(server.make_url(""))) as h:
        h.start()
        await h.publish(9003, 104)
        await h.settled()
        await asyncio.sleep(1.5)  # a nak would bring it back within this time
    assert plane.claims(104) == 1 and plane.events(104) == []


async def test_unknown_command_404_is_acked_and_malformed_notification_dropped(stand_in, nats_url):
    plane, server = stand_in
    async with Harness(nats_url, str(server.make_url(""))) as h:
        h.start()
        await h.publish(9004, 999)
        await h.publish(9004, 0, raw=b"{not json")
        await h.settled()
        await asyncio.sleep(1.5)
    assert plane.claims(999) == 1 and plane.events() == []


async def test_control_plane_down_naks_and_the_redelivery_succeeds(nats_url):
    """Nothing listens at the control plane's address at first; the notification comes back
    after the nak delay, and once the control plane is up the command runs exactly once."""
    port = free_port()
    plane = StandIn()
    python_command(plane, 105, 9005, "result = 'late but done'")
    async with Harness(nats_url, f"http://127.0.0.1:{port}") as h:
        h.start()
        await h.publish(9005, 105)
        # Claim attempts fail, the message is nak'ed (1 s), redelivered, and fails again.
        await until(lambda: h.metrics.claims.labels("retry_later")._value.get() >= 2, what="two deliveries")
        async with TestServer(plane.app(), host="127.0.0.1", port=port):
            await h.settled(20)
            assert plane.claims(105) == 1
            assert plane.events(105) == ["command.started", "call.done", "command.completed"]


async def test_busy_control_plane_retry_after_then_claimed(stand_in, nats_url):
    plane, server = stand_in
    python_command(plane, 106, 9006, "result = 6")
    plane.claim_answers[106] = [(503, {"code": "pool_saturated"}, {"Retry-After": "1"})] * 4
    async with Harness(nats_url, str(server.make_url(""))) as h:
        h.start()
        await h.publish(9006, 106)
        await h.settled(20)
    # Three in-process attempts per delivery: the fifth claim came from the redelivered message.
    assert plane.claims(106) == 5 and h.metrics.claims.labels("retry_later")._value.get() == 1
    assert plane.events(106) == ["command.started", "call.done", "command.completed"]


async def test_outcome_not_taken_is_reposted_on_redelivery_without_rerunning(stand_in, nats_url):
    plane, server = stand_in
    runs = []

    async def counted(config, inputs, ctx):
        runs.append(1)
        return {"runs": len(runs)}

    plane.commands[107] = {"execution_id": 9007, "step": "c", "action": "counted", "context": {"tool_config": {}}}
    plane.batch_failures["call.done"] = 4  # two deliveries' worth of retries (2 attempts each)
    async with Harness(nats_url, str(server.make_url("")), {**default_runners(), "counted": counted}) as h:
        h.start()
        await h.publish(9007, 107)
        await h.settled(20)
    refused = [w for k, w in plane.log if k == "refused"]
    assert refused == ["call.done"] * 4  # two deliveries' worth, then taken on the third
    assert runs == [1] and plane.claims(107) == 1
    assert plane.events(107) == ["command.started", "call.done", "command.completed"]
    assert plane.payloads("call.done")[0]["result"] == {"runs": 1}


async def test_ack_waits_for_the_outcome_and_long_steps_stay_alive(stand_in, nats_url):
    """A step running longer than ack_wait is kept alive (in_progress + command.heartbeat), and
    the message stays un-acked until the outcome batch is accepted."""
    plane, server = stand_in
    python_command(plane, 108, 9008, "import time\ntime.sleep(4)\nresult = 'slow'")
    plane.hold["call.done"] = asyncio.Event()
    async with Harness(nats_url, str(server.make_url(""))) as h:
        h.start()
        await h.publish(9008, 108)
        await until(lambda: any(k == "refused" or k == "event" and w[0] == "command.heartbeat"
                                for k, w in plane.log), what="a heartbeat")
        await asyncio.sleep(4.5)  # the tool has finished; its outcome batch is held by the server
        info = await h.consumer()
        assert info.num_ack_pending == 1 and info.num_redelivered == 0
        plane.hold["call.done"].set()
        await h.settled()
    assert plane.claims(108) == 1
    assert plane.events(108)[0] == "command.started" and plane.events(108)[-2:] == ["call.done", "command.completed"]
    assert plane.events(108).count("command.heartbeat") >= 3


async def test_shutdown_lets_running_steps_finish_within_the_grace(stand_in, nats_url):
    plane, server = stand_in
    python_command(plane, 109, 9009, "import time\ntime.sleep(1.5)\nresult = 'finished'")
    async with Harness(nats_url, str(server.make_url(""))) as h:
        h.start()
        await h.publish(9009, 109)
        await until(lambda: "command.started" in plane.events(109), what="the start")
        await h.stop()
        info = await h.consumer()
    assert plane.events(109)[-2:] == ["call.done", "command.completed"]
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_shutdown_past_the_grace_naks_and_another_worker_finishes(stand_in, nats_url):
    plane, server = stand_in
    runs = []

    async def blocking(config, inputs, ctx):
        runs.append(1)
        if len(runs) == 1:
            await asyncio.sleep(60)  # the first worker never finishes this one
        return "second time"

    plane.commands[110] = {"execution_id": 9010, "step": "b", "action": "blocking", "context": {"tool_config": {}}}
    runners = {**default_runners(), "blocking": blocking}
    async with Harness(nats_url, str(server.make_url("")), runners, shutdown_grace_seconds=0.5) as h:
        h.start()
        await h.publish(9010, 110)
        await until(lambda: runs == [1], what="the first run")
        started = time.monotonic()
        await h.stop()
        assert time.monotonic() - started < 10
        assert "call.done" not in plane.events(110) and "call.error" not in plane.events(110)
        # A successor on the same pool (same durable) gets the nak'ed message back.
        successor = Worker(h.worker.settings, runners, WorkerMetrics(CollectorRegistry()),
                           backoff=Backoff(attempts=2, first=0.05))
        task = asyncio.create_task(successor.run())
        try:
            await until(lambda: "call.done" in plane.events(110), timeout=20, what="the successor's result")
            await h.settled()
        finally:
            successor.stop()
            await asyncio.wait_for(task, 30)
    assert runs == [1, 1] and plane.payloads("call.done")[0]["result"] == "second time"


async def test_concurrency_is_bounded(stand_in, nats_url):
    plane, server = stand_in
    running, peak = [0], [0]

    async def tracked(config, inputs, ctx):
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        await asyncio.sleep(0.3)
        running[0] -= 1
        return inputs["i"]

    for i in range(6):
        plane.commands[200 + i] = {"execution_id": 9011, "step": f"s{i}", "action": "tracked",
                                   "context": {"tool_config": {}, "input": {"i": i}}}
    async with Harness(nats_url, str(server.make_url("")), {"tracked": tracked}, max_concurrent=2) as h:
        h.start()
        for i in range(6):
            await h.publish(9011, 200 + i)
        await until(lambda: len(plane.payloads("call.done")) == 6, timeout=20, what="six results")
        await h.settled()
    assert peak[0] == 2
    assert sorted(p["result"] for p in plane.payloads("call.done")) == list(range(6))
