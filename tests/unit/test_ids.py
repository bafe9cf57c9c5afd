import threading

import pytest

from noetl_common.ids import (EPOCH_MS, MAX_SEQUENCE, ShardIdMinter, Snowflake, compose, mint_for_shard,
                              node_of, parse_id, timestamp_ms)
from noetl_common.sharding import Epoch, ShardMap, shard_for


def test_layout_decodes_the_noetl_example():
    # 320816801799737344 = 76488686037 ms after the epoch, machine 1, sequence 0 (reference §2)
    assert timestamp_ms(320816801799737344) - EPOCH_MS == 76488686037
    assert node_of(320816801799737344) == 1
    assert compose(EPOCH_MS + 76488686037, 1, 0) == 320816801799737344


def test_monotonic_when_clock_steps_back_and_sequence_overflows():
    times = iter([EPOCH_MS + 100] * (MAX_SEQUENCE + 3) + [EPOCH_MS + 50] * 5)
    gen = Snowflake(3, clock=lambda: next(times))
    ids = [gen.next_id() for _ in range(MAX_SEQUENCE + 8)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(node_of(i) == 3 for i in ids)


def test_thread_safe_unique():
    gen = Snowflake(1)
    out: list[int] = []
    lock = threading.Lock()

    def work():
        local = [gen.next_id() for _ in range(5000)]
        with lock:
            out.extend(local)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(out)) == 20_000


@pytest.mark.parametrize("node", [-1, 1024])
def test_node_range(node):
    with pytest.raises(ValueError):
        Snowflake(node)


@pytest.mark.parametrize(("shard", "count"), [(0, 1), (0, 3), (2, 3), (13, 16)])
def test_mint_for_shard_is_owned_by_that_shard(shard, count):
    gen = Snowflake(5)
    ids = {mint_for_shard(shard, count, gen) for _ in range(200)}
    assert len(ids) == 200
    assert {shard_for(i, count) for i in ids} == {shard}


def test_mint_for_shard_rejects_out_of_range():
    with pytest.raises(ValueError):
        mint_for_shard(3, 3)


def test_shard_minter_follows_the_map_epoch_of_each_id():
    grow_at = EPOCH_MS + 10_000
    clock_values = iter(range(grow_at - 20, grow_at + 100_000))
    shard_map = ShardMap(epochs=(Epoch(0, 2), Epoch(grow_at, 4)))
    minter = ShardIdMinter(Snowflake(0, clock=lambda: next(clock_values)), 1, shard_map.count_at)
    ids = [minter() for _ in range(50)]
    assert all(shard_map.owner(i) == 1 for i in ids)
    # Ids from both epochs were minted, each owned under its own epoch's shard count.
    assert any(timestamp_ms(i) < grow_at for i in ids) and any(timestamp_ms(i) >= grow_at for i in ids)


@pytest.mark.parametrize(("value", "expected"), [(5, 5), ("42", 42), (" 7 ", 7), ("-3", -3)])
def test_parse_id_accepts_ints_and_strings(value, expected):
    assert parse_id(value) == expected


# "¹", "١٢" and "--5" pass str.isdigit() (after lstrip("-")) but are not ids: "¹" made int() raise
# its own error (found by fuzzing, a 500 on GET /api/credentials/¹).
@pytest.mark.parametrize("value", [True, "abc", "1.5", None, 2**63, [1], "¹", "\u0661\u0662", "--5", "1-"])
def test_parse_id_rejects_and_names_field(value):
    with pytest.raises(ValueError, match="execution_id"):
        parse_id(value, "execution_id")
