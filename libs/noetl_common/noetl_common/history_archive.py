"""The history archive's format, shared by the shard that writes it and `noetl_ops archive` that
reads it: `<root>/shard-<i>/<slice>/<table>.jsonl.gz` (gzip-compressed JSON lines, one object
per row, bytea as \\x hex) and `manifest.json`, written last (a folder without one is unfinished)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Iterator

import msgspec

MANIFEST = "manifest.json"


class ArchivedTable(msgspec.Struct, frozen=True):
    table: str
    file: str
    rows: int
    sha256: str


class Manifest(msgspec.Struct, frozen=True):
    shard_index: int
    slice: str
    lower: int | None              # None: every id below upper (the pre-partitioning slice)
    upper: int
    tables: list[ArchivedTable]
    archived_at: float
    format: str = "jsonl.gz"

    def holds(self, execution_id: int) -> bool:
        return (self.lower is None or self.lower <= execution_id) and execution_id < self.upper


def folder(root: Path, shard_index: int, slice_name: str) -> Path:
    return root / f"shard-{shard_index}" / slice_name


def manifests(root: Path) -> list[Path]:
    return sorted(root.glob(f"shard-*/*/{MANIFEST}"))


def read_manifest(path: Path) -> Manifest:
    return msgspec.json.decode(path.read_bytes(), type=Manifest)


def rows(slice_folder: Path, table: str) -> Iterator[dict[str, Any]]:
    with gzip.open(slice_folder / f"{table}.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def read_execution(root: Path, execution_id: int) -> dict[str, list[dict[str, Any]]] | None:
    """Every archived row of one execution, by table; None if no archive holds it."""
    for path in manifests(root):
        m = read_manifest(path)
        if m.holds(execution_id):
            found = {t.table: [r for r in rows(path.parent, t.table) if r["execution_id"] == execution_id]
                     for t in m.tables}
            if found.get("execution"):
                return found
    return None
