"""A stopped temporary fleet keeps its logs and nothing else."""

from pathlib import Path

from noetl_devstack.local_fleet import discard_state


def test_only_the_logs_outlive_a_temporary_fleet(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "api-shard-0.log").write_text("{}\n")
    (tmp_path / "pg" / "base").mkdir(parents=True)
    (tmp_path / "pg" / "base" / "1").write_bytes(b"x" * 100)
    (tmp_path / "nats").mkdir()
    (tmp_path / "secrets.json").write_text("{}")
    discard_state(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["logs", "logs/api-shard-0.log"]


def test_a_directory_already_gone_is_not_an_error(tmp_path: Path) -> None:
    discard_state(tmp_path / "never-made")
