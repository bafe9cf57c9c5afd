"""`make bench`: every benchmark; each writes its numbers under bench/results/."""

import asyncio

from . import engine_bench, fleet_bench, sharded_bench

engine_bench.main()
asyncio.run(fleet_bench.main())
asyncio.run(sharded_bench.main())
