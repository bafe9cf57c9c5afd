"""Archive before delete: a detached slice written to a directory (a mounted object store works
the same) as gzip-compressed JSON lines, one file per table, and a manifest naming the slice, its
bounds, and each file's rows and sha256. `read_execution` gets one execution's rows back (audit,
replay: see noetl_ops archive)."""

from __future__ import annotations

import gzip
import hashlib
import json
import time
from pathlib import Path
from typing import Any, Iterator

import asyncpg
import msgspec

from ..store import partitions

BATCH = 5000
MANIFEST = "manifest.json"


class ArchivedTable(msgspec.Struct, frozen=True):
    table: str
    file: str
    rows: int
    sha256: str


class Manifest(msgspec.Struct, frozen=True):
    shard_index: int
    slice: str
    lower: int | None
    upper: int
    tables: list[ArchivedTable]
    archived_at: float
    format: str = "jsonl.gz"


async def write(pool: asyncpg.Pool, root: Path, s: partitions.Slice, shard_index: int) -> Path:
    """Write every table of slice `s` (detached, so nothing writes it any more); the manifest's
    path. The manifest is written last, so a directory without one is an unfinished archive."""
    folder = root / f"shard-{shard_index}" / s.name
    folder.mkdir(parents=True, exist_ok=True)
    tables = []
    for table in partitions.TABLES:
        name = f"{table}.jsonl.gz"
        rows = await _dump(pool, s.partition(table), folder / name)
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        tables.append(ArchivedTable(table, name, rows, digest))
    manifest = folder / MANIFEST
    tmp = manifest.with_suffix(".tmp")
    tmp.write_bytes(msgspec.json.format(msgspec.json.encode(
        Manifest(shard_index, s.name, s.lower, s.upper, tables, time.time()))))
    tmp.replace(manifest)
    return manifest


async def _dump(pool: asyncpg.Pool, relation: str, path: Path) -> int:
    """The relation's rows as JSON lines (row_to_json: bytea as \\x hex), in key order."""
    rows = 0
    async with pool.acquire() as conn, conn.transaction():
        with gzip.open(path, "wt", encoding="utf-8") as out:
            async for r in conn.cursor(f"SELECT row_to_json(t)::text AS j FROM noetl.{relation} t", prefetch=BATCH):
                out.write(r["j"])
                out.write("\n")
                rows += 1
    return rows


def manifests(root: Path) -> list[Path]:
    return sorted(root.glob(f"shard-*/*/{MANIFEST}"))


def read_manifest(path: Path) -> Manifest:
    return msgspec.json.decode(path.read_bytes(), type=Manifest)


def rows(folder: Path, table: str) -> Iterator[dict[str, Any]]:
    with gzip.open(folder / f"{table}.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def read_execution(root: Path, execution_id: int) -> dict[str, list[dict[str, Any]]] | None:
    """Every archived row of one execution, by table; None if no archive holds it. The slice is
    found by the manifests' bounds (the id is in exactly one)."""
    for path in manifests(root):
        m = read_manifest(path)
        if (m.lower is None or m.lower <= execution_id) and execution_id < m.upper:
            found = {t.table: [r for r in rows(path.parent, t.table) if r["execution_id"] == execution_id]
                     for t in m.tables}
            if found.get("execution"):
                return found
    return None
