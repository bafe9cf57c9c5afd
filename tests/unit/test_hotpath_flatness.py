"""The hot-path bench's flatness: the fleet's own start->end rate where it has one, and only loops
that ran to the end."""

from bench.hotpath_bench import flatness


def loop(rate: float, server: float | None = None, truncated: bool = False) -> dict:
    out = {"steps_per_s": rate, "truncated": truncated}
    if server is not None:
        out["server_steps_per_s"] = server
    return out


def test_the_server_rate_is_used_where_there_is_one():
    # client-side 300 vs 450 would read as 1.5; the server's own rates are 400 vs 440
    assert flatness({"100": loop(300, 400), "5000": loop(450, 440)}) == {"of": "n=5000 vs n=100", "ratio": 1.1}


def test_the_peer_has_only_its_own_rate():
    assert flatness({"100": loop(350), "1000": loop(315)})["ratio"] == 0.9


def test_a_truncated_loop_is_left_out():
    loops = {"100": loop(300, 300), "1000": loop(330, 330), "5000": loop(10, 10, truncated=True)}
    assert flatness(loops) == {"of": "n=1000 vs n=100", "ratio": 1.1}
    assert flatness({"100": loop(300), "5000": loop(10, truncated=True)}) is None
