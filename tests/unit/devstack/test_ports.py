import socket
from pathlib import Path

from noetl_devstack import ports


def test_a_free_port_is_picked_below_the_ephemeral_range_and_is_bindable(monkeypatch, tmp_path):
    fake: Path = tmp_path / "range"
    fake.write_text("40000\t60999\n")
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE", fake)
    picked = {ports.free_port() for _ in range(20)}
    assert all(ports.LOWEST <= p < 40000 for p in picked), picked
    assert len(picked) > 1  # drawn at random, not the kernel's next one
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", picked.pop()))


def test_without_room_below_the_range_the_kernel_picks(monkeypatch, tmp_path):
    fake = tmp_path / "range"
    fake.write_text("1024\t65535\n")
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE", fake)
    assert 1024 <= ports.free_port() <= 65535
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE", tmp_path / "missing")
    assert ports.free_port() > 0
