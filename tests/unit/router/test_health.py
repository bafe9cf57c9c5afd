"""The per-shard health state machine and round-robin placement."""

from __future__ import annotations

from noetl_router.health import HealthBoard, ShardHealth


def test_unhealthy_after_threshold_consecutive_failures_and_back_on_success():
    h = ShardHealth(threshold=3)
    assert h.healthy
    assert not h.failure("refused") and not h.failure("refused")
    assert h.healthy
    assert h.failure("refused") is True and not h.healthy
    assert h.failure("refused") is False  # already down: no second flip
    assert h.success() is True and h.healthy and h.consecutive_failures == 0
    assert h.success() is False


def test_a_success_resets_the_count():
    h = ShardHealth(threshold=2)
    h.failure("x")
    h.success()
    h.failure("x")
    assert h.healthy


def test_board_reports_changes_and_round_robins_over_healthy_shards():
    changes: list[tuple[int, bool]] = []
    board = HealthBoard(3, threshold=1, on_change=lambda i, ok: changes.append((i, ok)))
    assert changes == [(0, True), (1, True), (2, True)]
    assert [board.next_healthy() for _ in range(4)] == [0, 1, 2, 0]
    board.failure(1, "refused")
    assert changes[-1] == (1, False) and board.healthy_shards() == [0, 2]
    assert [board.next_healthy() for _ in range(4)] == [2, 0, 2, 0]
    board.success(1)
    assert changes[-1] == (1, True)
    assert sorted({board.next_healthy() for _ in range(3)}) == [0, 1, 2]


def test_no_healthy_shard_means_none_and_mark_down_is_immediate():
    board = HealthBoard(2, threshold=5)
    board.mark_down(0, "probe failed")
    assert not board.is_healthy(0)
    board.mark_down(1, "probe failed")
    assert board.next_healthy() is None
    assert board.snapshot()["1"]["last_error"] == "probe failed"
