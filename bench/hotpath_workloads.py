"""Fleet-side workloads of the hot-path bench, driven through the router's public HTTP API.

A: 3-step executions with a fixed number in flight; completion seen by ONE poller listing
   RUNNING executions (no per-execution polling).
B: one execution looping sequentially over n python steps.
C: heartbeat-like events POSTed by many clients against executions kept running."""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import datetime

import aiohttp
import msgspec

THREE_STEPS = b"""
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: three, path: bench/three_steps}
workflow:
  - step: start
    tool: {kind: python, code: "result = {'a': 1}"}
    next: [{step: middle}]
  - step: middle
    tool: {kind: python, input: {a: "{{ start.a }}"}, code: "result = {'b': a + 1}"}
    next: [{step: end}]
  - step: end
    tool: {kind: python, input: {b: "{{ middle.b }}"}, code: "result = {'c': b + 1}"}
"""

# An int `in` iterates 0..n-1 (engine `_as_items`); the iterator is also a bare tool argument. The
# loop is the whole workflow, n steps and nothing else, as DBOS's loop_wf is.
SEQUENTIAL_LOOP = b"""
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: loop, path: bench/sequential_loop}
workload: {n: 10}
workflow:
  - step: start
    loop: {in: "{{ workload.n }}", iterator: item, spec: {mode: sequential}}
    tool: {kind: python, code: "result = {'status': 'ok', 'i': item}"}
"""

# Stays RUNNING until cancelled. Short sleeps, so the worker can interrupt the step on cancel
# (an async exception is delivered between bytecodes, never inside one long time.sleep).
SLEEPER = b"""
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: sleeper, path: bench/sleeper}
workflow:
  - step: start
    tool: {kind: python, code: "import time\\nfor _ in range(36000):\\n    time.sleep(0.1)\\nresult = {}"}
"""

PLAYBOOKS = (THREE_STEPS, SEQUENTIAL_LOOP, SLEEPER)


class Started(msgspec.Struct):
    execution_id: str


class Listed(msgspec.Struct):
    execution_id: str
    status: str
    start_time: str | None = None
    end_time: str | None = None


class Event(msgspec.Struct):
    created_at: str
    node_name: str | None = None


class Pagination(msgspec.Struct):
    has_next: bool
    next_before_event_id: str | None = None


class EventPage(msgspec.Struct):
    events: list[Event]
    pagination: Pagination


LIST_DECODER = msgspec.json.Decoder(list[Listed])
STARTED_DECODER = msgspec.json.Decoder(Started)
ENTRY_DECODER = msgspec.json.Decoder(Listed)


class BenchError(RuntimeError):
    pass


def pct_ms(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of seconds, in ms (the rule dbos_bench.py uses)."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return round(s[k] * 1000, 2)


def server_seconds(entry: Listed) -> float:
    start, end = datetime.fromisoformat(entry.start_time), datetime.fromisoformat(entry.end_time)
    return (end - start).total_seconds()


async def register(session: aiohttp.ClientSession, url: str, content: bytes) -> None:
    async with session.post(f"{url}/api/catalog/register",
                            json={"content": base64.b64encode(content).decode(), "resource_type": "Playbook"}) as r:
        if r.status != 200:
            raise BenchError(f"register answered {r.status}: {await r.text()}")


async def start(session: aiohttp.ClientSession, url: str, path: str, workload: dict | None = None) -> str:
    body = {"path": path, **({"workload": workload} if workload else {})}
    async with session.post(f"{url}/api/execute", json=body) as r:
        raw = await r.read()
        if r.status != 200:
            raise BenchError(f"execute {path} answered {r.status}: {raw[:300]!r}")
    return STARTED_DECODER.decode(raw).execution_id


async def list_all(session: aiohttp.ClientSession, url: str, status: str) -> list[Listed]:
    """Every execution with `status`, following X-Next-Cursor."""
    out: list[Listed] = []
    params = {"status": status, "limit": "500"}
    while True:
        async with session.get(f"{url}/api/executions", params=params) as r:
            raw = await r.read()
            if r.status != 200:
                raise BenchError(f"list {status} answered {r.status}: {raw[:300]!r}")
            cursor = r.headers.get("X-Next-Cursor")
        out.extend(LIST_DECODER.decode(raw))
        if not cursor:
            return out
        params = {**params, "cursor": cursor}


# --- A: 3-step executions, N in flight ------------------------------------------------------------

class InFlight:
    """Executions we started and have not seen finish; the poller resolves their futures."""

    def __init__(self) -> None:
        self.waiting: dict[str, tuple[float, asyncio.Future]] = {}  # id -> (acknowledged at, done)

    def add(self, execution_id: str) -> asyncio.Future:
        done = asyncio.get_running_loop().create_future()
        self.waiting[execution_id] = (time.perf_counter(), done)
        return done

    def resolve_absent(self, running: set[str], asked_at: float) -> None:
        # Only executions whose start was acknowledged before the list was requested: their row was
        # committed with the start, so absence from that list really means finished.
        for eid, (acked, done) in list(self.waiting.items()):
            if acked < asked_at and eid not in running:
                del self.waiting[eid]
                done.set_result(time.perf_counter())


async def poll_running(session: aiohttp.ClientSession, url: str, flight: InFlight, stop: asyncio.Event,
                       interval: float = 0.05) -> int:
    """The one poller: list RUNNING executions every `interval`; returns how many lists it read."""
    polls = 0
    while not stop.is_set():
        asked_at = time.perf_counter()
        running = {e.execution_id for e in await list_all(session, url, "RUNNING")}
        polls += 1
        flight.resolve_absent(running, asked_at)
        await asyncio.sleep(interval)
    return polls


async def three_step_run(session: aiohttp.ClientSession, url: str, total: int, in_flight: int,
                         timeout: float = 600.0, *, rounds: bool = False) -> dict:
    """`lanes` (default): `in_flight` lanes each start the next execution as soon as theirs ends,
    so `in_flight` are really running all the time. `rounds`: DBOS's bench pattern (its "serial"
    mode), one client starting `in_flight` executions one after another, waiting for all of them,
    then the next round; concurrency is whatever the start rate allows, so the latencies compare
    with the peer's directly."""
    flight, stop = InFlight(), asyncio.Event()
    ids: list[str] = []
    client_s: list[float] = []
    remaining = iter(range(total))
    # One at a time, a poller's interval would be most of what the client measures (~50 ms against
    # a ~10 ms execution): the client follows the execution's event stream to its end instead.
    follow = in_flight == 1 and not rounds

    async def started() -> asyncio.Future:
        t = time.perf_counter()
        eid = await start(session, url, "bench/three_steps")
        ids.append(eid)
        done = asyncio.ensure_future(stream_end(session, url, eid)) if follow else flight.add(eid)
        done.add_done_callback(lambda f: f.cancelled() or f.exception() or client_s.append(f.result() - t))
        return done

    async def lane() -> None:
        for _ in remaining:
            await (await started())

    async def in_rounds() -> None:
        for first in range(0, total, in_flight):
            await asyncio.gather(*[await started() for _ in range(min(in_flight, total - first))])

    poller = asyncio.create_task(stop.wait() if follow else poll_running(session, url, flight, stop))
    t0 = time.perf_counter()
    work = asyncio.ensure_future(in_rounds() if rounds else asyncio.gather(*(lane() for _ in range(in_flight))))
    try:
        # A poller that dies would leave every lane waiting forever: stop on whichever ends first.
        done, _ = await asyncio.wait({work, poller}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if work not in done:
            if poller in done:
                poller.result()  # raises the poller's error
            raise BenchError(f"{len(flight.waiting)} executions still running after {timeout:.0f}s")
        work.result()
    finally:
        work.cancel()
        stop.set()
        polls = (await poller) if not follow else 0
    wall = time.perf_counter() - t0
    server_s = await finished_as_completed(session, url, set(ids))
    return {"executions": total, "in_flight": in_flight, "start_pattern": "rounds" if rounds else "lanes",
            "wall_s": round(wall, 3), "wf_per_s": round(total / wall, 2), "steps_per_s": round(3 * total / wall, 2),
            "server_p50_ms": pct_ms(server_s, 50), "server_p99_ms": pct_ms(server_s, 99),
            "client_p50_ms": pct_ms(client_s, 50), "client_p99_ms": pct_ms(client_s, 99),
            "running_list_polls": polls}


async def stream_end(session: aiohttp.ClientSession, url: str, eid: str) -> float:
    """When the execution's live event stream (SSE) says `end`: sent once the terminal event is
    committed (replayed at once if it already is), so the client learns of the end without polling."""
    async with session.get(f"{url}/api/executions/{eid}/events/stream") as r:
        if r.status != 200:
            raise BenchError(f"event stream of {eid} answered {r.status}")
        async for line in r.content:
            if line.startswith(b"event: end"):
                return time.perf_counter()
    raise BenchError(f"event stream of {eid} closed before its end event")


async def finished_as_completed(session: aiohttp.ClientSession, url: str, ids: set[str]) -> list[float]:
    """Server-side start->end of each of `ids`; fails loudly unless every one is COMPLETED."""
    completed = {e.execution_id: e for e in await list_all(session, url, "COMPLETED") if e.execution_id in ids}
    missing = ids - completed.keys()
    if missing:
        failed = [e for s in ("FAILED", "CANCELLED") for e in await list_all(session, url, s)
                  if e.execution_id in missing]
        raise BenchError(f"{len(missing)} of {len(ids)} executions did not complete; e.g. "
                         f"{[(e.execution_id, e.status) for e in failed[:3]] or sorted(missing)[:3]}")
    return [server_seconds(e) for e in completed.values()]


# --- B: one sequential loop -----------------------------------------------------------------------

async def entry(session: aiohttp.ClientSession, url: str, eid: str) -> Listed:
    # The bare execution row (no events, no command list): cheap even for a 5000-step execution,
    # unlike /status, which reads every command of the execution.
    async with session.get(f"{url}/api/executions/{eid}", params={"include_events": "false"}) as r:
        raw = await r.read()
        if r.status != 200:
            raise BenchError(f"execution {eid} answered {r.status}: {raw[:300]!r}")
    return ENTRY_DECODER.decode(raw)


async def loop_run(session: aiohttp.ClientSession, url: str, n: int, budget: float) -> dict:
    """Start, then read the bare row until it is no longer RUNNING, every 5% of the time elapsed
    (10-50 ms): the end is seen within ~5% of the run for n=100 as for n=5000, at ~20-250 reads.
    A loop still running after `budget` seconds is cancelled and reported as truncated (the slow
    "before" code would otherwise take many minutes for n=5000)."""
    t0 = time.perf_counter()
    eid = await start(session, url, "bench/sequential_loop", {"n": n})
    truncated = False
    while True:
        await asyncio.sleep(min(0.05, max(0.01, (time.perf_counter() - t0) / 20)))
        row = await entry(session, url, eid)
        if row.status != "RUNNING":
            break
        if time.perf_counter() - t0 > budget:
            await cancel_all(session, url, [eid])
            truncated = True
            break
    wall = time.perf_counter() - t0
    if not truncated and row.status != "COMPLETED":
        raise BenchError(f"loop of {n} ended {row.status}")
    out = {"n": n, "execution_id": eid, "wall_s": round(wall, 3), "truncated": truncated}
    if not truncated:
        out.update(steps_per_s=round(n / wall, 2), server_steps_per_s=round(n / server_seconds(row), 2))
    return out


async def step_completions(session: aiohttp.ClientSession, url: str, eid: str, step: str) -> list[datetime]:
    """Server timestamps of every completed command of `step`, oldest first."""
    stamps: list[datetime] = []
    params = {"page_size": "500", "event_type": "command.completed"}
    while True:
        async with session.get(f"{url}/api/executions/{eid}/events", params=params) as r:
            if r.status != 200:
                raise BenchError(f"events of {eid} answered {r.status}: {await r.text()}")
            body = msgspec.json.decode(await r.read(), type=EventPage)
        stamps.extend(datetime.fromisoformat(e.created_at) for e in body.events if e.node_name == step)
        if not body.pagination.has_next:
            return sorted(stamps)
        params = {**params, "before_event_id": body.pagination.next_before_event_id}  # newest first


def stalls(stamps: list[datetime], over_s: float = 0.5) -> dict:
    """Gaps between consecutive step completions longer than `over_s`: a loop that flows at tens
    of steps/s but sometimes waits about a second points at a missed wake-up and a poll fallback."""
    gaps = [(b - a).total_seconds() for a, b in zip(stamps, stamps[1:])]
    long = [g for g in gaps if g > over_s]
    return {"over_s": over_s, "count": len(long), "seconds": round(sum(long), 2),
            "max_gap_s": round(max(gaps), 3) if gaps else None}


def chunk_rates(stamps: list[datetime], chunks: int = 10) -> list[float]:
    """Steps/s within consecutive chunks of a loop's completions: flat = no slowdown with history."""
    size = max(1, len(stamps) // chunks)
    rates = []
    for i in range(0, len(stamps) - size, size):
        seconds = (stamps[i + size] - stamps[i]).total_seconds()
        rates.append(round(size / seconds, 1) if seconds > 0 else None)
    return rates


async def loop_detail(session: aiohttp.ClientSession, url: str, run: dict) -> dict:
    """After the measurement: steps done (what a truncated loop got through) and per-chunk rates."""
    stamps = await step_completions(session, url, run["execution_id"], "start")
    out = {**run, "steps_completed": len(stamps), "chunk_steps_per_s": chunk_rates(stamps),
           "stalls": stalls(stamps)}
    if run["truncated"]:
        out["steps_per_s"] = round(len(stamps) / run["wall_s"], 2)
    return out


# --- C: event ingest ------------------------------------------------------------------------------

async def start_sleepers(session: aiohttp.ClientSession, url: str, count: int) -> list[str]:
    return list(await asyncio.gather(*(start(session, url, "bench/sleeper") for _ in range(count))))


async def cancel_all(session: aiohttp.ClientSession, url: str, ids: list[str]) -> None:
    async def one(eid: str) -> None:
        async with session.post(f"{url}/api/executions/{eid}/cancel", json={"reason": "bench done"}) as r:
            if r.status != 200:
                raise BenchError(f"cancel {eid} answered {r.status}: {await r.text()}")
    await asyncio.gather(*(one(e) for e in ids))


async def ingest_run(session: aiohttp.ClientSession, url: str, targets: list[str], total: int,
                     clients: int) -> dict:
    latencies: list[float] = []
    counter = iter(range(total))

    async def client() -> None:
        for n in counter:
            body = {"execution_id": targets[n % len(targets)], "event_type": "worker.heartbeat",
                    "step": "bench", "payload": {"n": n}}
            t = time.perf_counter()
            async with session.post(f"{url}/api/events", json=body) as r:
                await r.read()
                if r.status != 200:
                    raise BenchError(f"POST /api/events answered {r.status}")
            latencies.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - t0
    return {"events": total, "clients": clients, "executions": len(targets), "wall_s": round(wall, 3),
            "events_per_s": round(total / wall, 1), "p50_ms": pct_ms(latencies, 50),
            "p99_ms": pct_ms(latencies, 99)}
