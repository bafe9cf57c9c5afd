"""When a long-polling outbox claim may read (`Wakeups.claim_pause`): at once after an urgent
write or while a backlog drains, otherwise no sooner than LAZY_OUTBOX_SECONDS after the last
claim that found rows, so a steady stream of mirror rows is relayed in batches."""

from __future__ import annotations

from noetl_api_shard.execution.write.wakeups import LAZY_OUTBOX_SECONDS, Wakeups

LAZY = LAZY_OUTBOX_SECONDS


def test_a_first_claim_and_one_after_an_empty_read_do_not_wait():
    w = Wakeups()
    assert w.claim_pause(100.0) == 0.0
    w.claim_reading()
    w.claim_read(100.0, found=0, limit=100)
    assert w.claim_pause(100.01) == 0.0


def test_a_claim_right_after_one_that_found_rows_waits_out_the_interval():
    w = Wakeups()
    w.claim_reading()
    w.claim_read(100.0, found=3, limit=100)
    assert abs(w.claim_pause(100.02) - (LAZY - 0.02)) < 1e-9
    assert w.claim_pause(100.0 + LAZY) == 0.0


def test_a_full_read_means_a_backlog_and_no_wait():
    w = Wakeups()
    w.claim_reading()
    w.claim_read(100.0, found=100, limit=100)
    assert w.claim_pause(100.001) == 0.0


async def test_an_urgent_write_lifts_the_wait_until_a_claim_reads_it():
    w = Wakeups()
    w.claim_reading()
    w.claim_read(100.0, found=3, limit=100)
    w.outbox_written(urgent=True)
    assert w.claim_pause(100.01) == 0.0
    w.claim_reading()  # the urgent row is in what this claim reads
    w.claim_read(100.02, found=1, limit=100)
    assert w.claim_pause(100.03) > 0.0


async def test_a_lazy_write_does_not_lift_it():
    w = Wakeups()
    w.claim_reading()
    w.claim_read(100.0, found=3, limit=100)
    w.outbox_written(urgent=False)
    assert w.claim_pause(100.01) > 0.0
