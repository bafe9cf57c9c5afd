"""Every process of the fleet stops cleanly on SIGTERM (exit 0) within the grace its supervisor
gives it (`Supervisor.stop_all`: 8 s, then SIGKILL; a pod's terminationGracePeriod is longer). The
projector once drained its pull subscriptions for ~20 s and was always killed."""

from __future__ import annotations

import asyncio
import signal

from .conftest import own_fleet

GRACE_SECONDS = 8.0


async def test_each_process_exits_cleanly_on_sigterm():
    async with own_fleet("noetl-clean-stop-", 1, workers=1) as fleet:
        procs = {name: proc for name, (_, proc) in fleet.supervisor.running.items()}
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GRACE_SECONDS
        while any(p.poll() is None for p in procs.values()) and loop.time() < deadline:
            await asyncio.sleep(0.1)
        codes = {name: proc.poll() for name, proc in procs.items()}
        assert codes == {name: 0 for name in procs}, codes
