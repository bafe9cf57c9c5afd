"""`make bench`: every benchmark; each writes its numbers under bench/results/."""

from . import engine_bench

engine_bench.main()
