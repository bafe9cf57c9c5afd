"""The lean hot path against real NATS JetStream and a stand-in shard that supports it: claims
that start the command, next commands handed over in outcome answers (eager dispatch) and run
without NATS or a claim, replays that repeat them, slots, in-process re-posting, multi-fetch."""

from __future__ import annotations

import asyncio
import logging

from noetl_worker.runtime import Worker

from .conftest import StandIn
from .harness import Harness, python_command, until

OUTCOME = ["call.done", "command.completed"]


def chain(plane: StandIn, execution_id: int, ids: list[int]) -> None:
    """Commands run one after another: each outcome answer hands over the next."""
    for i, command_id in enumerate(ids):
        python_command(plane, command_id, execution_id, f"result = {i}", step=f"s{i}")
    for current, following in zip(ids, ids[1:]):
        plane.handover[current] = [following]


async def test_claim_that_started_the_command_posts_no_command_started(stand_in, nats_url):
    plane, server = stand_in
    plane.started_on_claim = True
    python_command(plane, 301, 9301, "result = 'lean'")
    async with Harness(nats_url, str(server.make_url(""))) as h:
        h.start()
        await h.publish(9301, 301)
        await h.settled()
    assert plane.claims(301) == 1
    assert plane.events(301) == OUTCOME
    assert plane.payloads("call.done")[0]["result"] == "lean"


async def test_claim_without_started_posts_command_started(stand_in, nats_url):
    plane, server = stand_in
    python_command(plane, 302, 9302, "result = 'classic'")
    async with Harness(nats_url, str(server.make_url(""))) as h:
        h.start()
        await h.publish(9302, 302)
        await h.settled()
    assert plane.events(302) == ["command.started", *OUTCOME]


async def test_handed_over_command_runs_without_claim_or_message_and_asks_again(stand_in, nats_url):
    plane, server = stand_in
    plane.started_on_claim = True
    chain(plane, 9303, [303, 304])
    async with Harness(nats_url, str(server.make_url(""))) as h:
        h.start()
        await h.publish(9303, 303)
        await until(lambda: plane.events(304) == OUTCOME, what="the handed-over command's outcome")
        info = await h.settled()
        assert info.delivered.consumer_seq == 1 and info.num_redelivered == 0  # only 303 came through NATS
    assert plane.claims(303) == 1 and plane.claims(304) == 0
    assert "command.started" not in plane.events()
    pool = h.pool
    [first] = plane.outcome_bodies(303)
    assert first["eager"] == {"slots": 2, "pool": pool}  # its own slot plus the one spare (max_concurrent=2)
    [second] = plane.outcome_bodies(304)
    assert second["eager"] == {"slots": 2, "pool": pool}
    assert plane.payloads("call.done")[1]["result"] == 1
    assert h.metrics.handed_over.labels("run")._value.get() == 1


async def test_chain_of_handed_over_commands_completes(stand_in, nats_url):
    plane, server = stand_in
    ids = [310, 311, 312, 313]
    chain(plane, 9310, ids)
    async with Harness(nats_url, str(server.make_url(""))) as h:
        h.start()
        await h.publish(9310, 310)
        await until(lambda: plane.events(313) == OUTCOME, what="the end of the chain")
        await h.settled()
    assert [plane.claims(i) for i in ids] == [1, 0, 0, 0]
    assert [c for kind, c in plane.log if kind == "handed"] == [311, 312, 313]
    assert [p["result"] for p in plane.payloads("call.done")] == [0, 1, 2, 3]
    # The classic claim (no `started`) still reports its start; handed-over ones never do.
    assert plane.events(310) == ["command.started", *OUTCOME]
    assert all(plane.events(i) == OUTCOME for i in ids[1:])


async def test_replayed_answer_does_not_run_a_command_twice(stand_in, nats_url):
    """321's outcome is taken but its answer lost: the in-process re-post gets the replay (same
    key, same handed-over 322). Later answers hand over 322 again (finished) and 323 twice in one
    answer (running): each runs exactly once."""
    plane, server = stand_in
    runs: list[int] = []

    async def counted(config, inputs, ctx):
        runs.append(inputs["n"])
        return inputs["n"]

    for n in (320, 321, 322, 323):
        plane.commands[n] = {"execution_id": 9320, "step": f"s{n}", "action": "counted",
                             "context": {"tool_config": {}, "input": {"n": n}}}
    plane.handover = {320: [321], 321: [322], 322: [322, 323, 323]}
    plane.lost_answers[321] = 1
    async with Harness(nats_url, str(server.make_url("")), {"counted": counted}, max_concurrent=3) as h:
        h.start()
        await h.publish(9320, 320)
        await until(lambda: plane.events(323) == OUTCOME, what="the last command's outcome")
        await h.settled()
        await asyncio.sleep(0.5)  # room for a wrongly spawned duplicate to show up
    assert sorted(runs) == [320, 321, 322, 323]
    assert ("lost", 321) in plane.log and ("replay", 321) in plane.log
    assert h.metrics.handed_over.labels("duplicate")._value.get() == 2
    assert all(plane.events(n) == OUTCOME for n in (321, 322, 323))


async def test_a_repeated_notification_does_not_run_a_command_again_while_its_outcome_is_on_its_way(
        stand_in, nats_url):
    """A server that answers a worker's repeated claim with the same claim (the stand-in; this
    fleet's shards now answer 409): a re-announced command arriving after it ran here but before
    its outcome was taken must not run a second time."""
    plane, server = stand_in
    runs: list[int] = []

    async def counted(config, inputs, ctx):
        runs.append(inputs["n"])
        return inputs["n"]

    plane.commands[350] = {"execution_id": 9350, "step": "s", "action": "counted",
                           "context": {"tool_config": {}, "input": {"n": 350}}}
    plane.started_on_claim = True
    release = plane.hold["call.done"] = asyncio.Event()
    async with Harness(nats_url, str(server.make_url("")), {"counted": counted}) as h:
        h.start()
        await h.publish(9350, 350)
        await until(lambda: runs == [350], what="the first run")
        await asyncio.sleep(0.2)  # its outcome is posted and held
        await h.publish(9350, 350)  # the re-announcement
        await until(lambda: plane.claims(350) == 2, what="the repeated claim")
        await asyncio.sleep(0.5)  # room for a wrong second run
        release.set()
        await until(lambda: "call.done" in plane.events(350), what="the outcome")
        await h.settled()
    assert runs == [350] and plane.events(350) == OUTCOME


async def test_concurrency_stays_bounded_with_handed_over_extras(stand_in, nats_url):
    """More commands are handed over than there are slots (as a race could leave it), while
    notifications keep coming: extras wait for a slot, and nothing is dropped or run twice."""
    plane, server = stand_in
    running, peak, done = [0], [0], []

    async def tracked(config, inputs, ctx):
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        await asyncio.sleep(0.2)
        running[0] -= 1
        done.append(inputs["i"])
        return inputs["i"]

    ids = list(range(330, 340))
    for i in ids:
        plane.commands[i] = {"execution_id": 9330, "step": f"s{i}", "action": "tracked",
                             "context": {"tool_config": {}, "input": {"i": i}}}
    plane.handover = {330: [331, 332, 333, 334], 331: [335], 332: [336]}
    async with Harness(nats_url, str(server.make_url("")), {"tracked": tracked}, max_concurrent=2) as h:
        h.start()
        for i in (330, 337, 338, 339):
            await h.publish(9330, i)
        await until(lambda: len(plane.payloads("call.done")) == len(ids), timeout=30, what="every result")
        await h.settled()
    assert peak[0] <= 2
    assert sorted(done) == ids
    assert all(plane.events(i)[-2:] == OUTCOME for i in ids)
    assert all(plane.claims(i) == 0 for i in range(331, 337))


async def test_handed_over_outcome_is_reposted_in_process(stand_in, nats_url):
    """No message carries a retry for a handed-over command: its outcome is re-posted in the
    worker (two refused batches: one failed post with the harness' 2 attempts) until taken."""
    plane, server = stand_in
    chain(plane, 9340, [340, 341])
    plane.outcome_failures[341] = 2
    async with Harness(nats_url, str(server.make_url(""))) as h:
        h.start()
        await h.publish(9340, 340)
        await until(lambda: plane.events(341) == OUTCOME, what="the re-posted outcome")
        info = await h.settled()
        assert info.num_redelivered == 0
    assert [w for k, w in plane.log if k == "refused"] == ["call.done", "call.done"]
    assert plane.claims(341) == 0 and plane.payloads("call.done")[1]["result"] == 1
    assert h.metrics.report_failures._value.get() == 1
    assert h.metrics.commands.labels("python", "ok")._value.get() == 2  # the tool ran once per command


async def test_eager_dispatch_off_asks_for_nothing(stand_in, nats_url):
    plane, server = stand_in
    chain(plane, 9350, [350, 351])
    async with Harness(nats_url, str(server.make_url("")), eager_dispatch=False) as h:
        h.start()
        await h.publish(9350, 350)
        await h.settled()
    [body] = plane.outcome_bodies(350)
    assert "eager" not in body and plane.events(351) == []


class CountingFetches(Worker):
    """Records how many messages each fetch asked for and got."""

    fetches: list[tuple[int, int]]

    async def _fetch(self, sub, wanted, timeout):
        msgs = await super()._fetch(sub, wanted, timeout)
        if msgs:
            self.fetches.append((wanted, len(msgs)))
        return msgs


async def test_a_burst_of_notifications_costs_two_fetches(stand_in, nats_url):
    """A long poll for one, then one short poll for the free slots takes the rest."""
    plane, server = stand_in
    ids = [360, 361, 362]
    for i in ids:
        python_command(plane, i, 9360, f"result = {i}")
    async with Harness(nats_url, str(server.make_url("")), worker_cls=CountingFetches, max_concurrent=4) as h:
        h.worker.fetches = []
        for i in ids:  # before the worker starts: they wait in the stream
            await h.publish(9360, i)
        h.start()
        await until(lambda: len(plane.payloads("call.done")) == 3, what="three results")
        await h.settled()
    assert h.worker.fetches[:2] == [(1, 1), (3, 2)]
    assert sorted(p["result"] for p in plane.payloads("call.done")) == ids


class GatedSecondFetch(Worker):
    """Holds its second fetch (whose reservation is the one spare slot) until `gate` returns."""

    gate = None
    calls = 0

    async def _fetch(self, sub, wanted, timeout):
        self.calls += 1
        if self.calls == 2 and self.gate is not None:
            await self.gate()
        return await super()._fetch(sub, wanted, timeout)


async def test_notification_whose_slot_went_to_a_handed_over_command_is_handed_back(stand_in, nats_url, caplog):
    """The pull waits on JetStream with the spare slot reserved; a handed-over extra takes it back
    at once; the notification that then arrives finds no slot, goes back to JetStream, and runs
    when it returns."""
    caplog.set_level(logging.DEBUG, logger="noetl.worker")
    plane, server = stand_in
    running, peak = [0], [0]

    async def tracked(config, inputs, ctx):
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        await asyncio.sleep(0.3)
        running[0] -= 1
        return inputs["i"]

    ids = [370, 371, 372, 373]
    for i in ids:
        plane.commands[i] = {"execution_id": 9370, "step": f"s{i}", "action": "tracked",
                             "context": {"tool_config": {}, "input": {"i": i}}}
    plane.handover = {370: [371, 372]}
    async with Harness(nats_url, str(server.make_url("")), {"tracked": tracked}, worker_cls=GatedSecondFetch,
                       max_concurrent=2) as h:
        async def gate() -> None:
            await until(lambda: h.worker._slots.busy == 2, what="the extra to take the reserved slot")
            await h.publish(9370, 373)

        h.worker.gate = gate
        await h.publish(9370, 370)
        h.start()
        await until(lambda: len(plane.payloads("call.done")) == 4, timeout=30, what="every result")
        await h.settled()
    assert "handing them back" in caplog.text
    assert peak[0] <= 2 and plane.claims(373) == 1
    assert sorted(p["result"] for p in plane.payloads("call.done")) == ids


async def test_stopping_lets_a_handed_over_command_finish_and_asks_for_nothing_more(stand_in, nats_url):
    plane, server = stand_in
    started = asyncio.Event()
    release = asyncio.Event()

    async def step(config, inputs, ctx):
        if inputs["n"] == 381:
            started.set()
            await release.wait()
        return inputs["n"]

    for n in (380, 381, 382):
        plane.commands[n] = {"execution_id": 9380, "step": f"s{n}", "action": "step",
                             "context": {"tool_config": {}, "input": {"n": n}}}
    plane.handover = {380: [381], 381: [382]}
    async with Harness(nats_url, str(server.make_url("")), {"step": step}) as h:
        h.start()
        await h.publish(9380, 380)
        await asyncio.wait_for(started.wait(), 15)
        h.worker.stop()
        release.set()
        await h.stop()
    assert plane.events(381) == OUTCOME
    [body] = plane.outcome_bodies(381)
    assert "eager" not in body and plane.events(382) == []  # 382 is left to NATS and another worker


async def test_past_the_grace_a_handed_over_command_is_cancelled(stand_in, nats_url):
    plane, server = stand_in
    started = asyncio.Event()

    async def step(config, inputs, ctx):
        if inputs["n"] == 391:
            started.set()
            await asyncio.sleep(60)
        return inputs["n"]

    for n in (390, 391):
        plane.commands[n] = {"execution_id": 9390, "step": f"s{n}", "action": "step",
                             "context": {"tool_config": {}, "input": {"n": n}}}
    plane.handover = {390: [391]}
    async with Harness(nats_url, str(server.make_url("")), {"step": step}, shutdown_grace_seconds=0.5) as h:
        h.start()
        await h.publish(9390, 390)
        await asyncio.wait_for(started.wait(), 15)
        await h.stop()  # returns once the grace is over and the command cancelled (no hang on the 60 s step)
        info = await h.consumer()
    assert plane.events(390) == ["command.started", *OUTCOME]
    assert set(plane.events(391)) <= {"command.heartbeat"}  # kept alive while it ran, no outcome
    assert info.num_ack_pending == 0 and info.num_pending == 0  # 390's message was acked; 391 had none
