"""Threads of one worker opening the same DuckDB file at once (a parallel loop's iterations on one
execution's database): DuckDB lets one of them create the file's instance and answers the others
"Unique file handle conflict"; each must get its connection."""

from __future__ import annotations

import threading

import duckdb

from noetl_worker.tools.duckdb_tool import _connect


def test_threads_opening_one_file_at_once_all_connect(tmp_path):
    errors: list[str] = []

    def one(path: str, start: threading.Barrier) -> None:
        start.wait()
        try:
            con = _connect(duckdb, path)
            con.execute("SELECT 1").fetchall()
            con.close()
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(str(exc))

    for trial in range(50):
        args = (str(tmp_path / f"db{trial}.duckdb"), threading.Barrier(8))
        threads = [threading.Thread(target=one, args=args) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
