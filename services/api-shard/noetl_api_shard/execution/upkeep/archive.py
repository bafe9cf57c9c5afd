"""Archive before delete: a detached slice written to a directory (a mounted object store works
the same) in the format of noetl_common.history_archive: gzip-compressed JSON lines, one file per
table, and a manifest naming the slice, its bounds, and each file's rows and sha256."""

from __future__ import annotations

import gzip
import hashlib
import time
from pathlib import Path

import asyncpg
import msgspec

from noetl_common.history_archive import MANIFEST, ArchivedTable, Manifest, folder as slice_folder

from ...store import partitions

BATCH = 5000


async def write(pool: asyncpg.Pool, root: Path, s: partitions.Slice, shard_index: int) -> Path:
    """Write every table of slice `s` (detached, so nothing writes it any more); the manifest's
    path. The manifest is written last, so a directory without one is an unfinished archive."""
    folder = slice_folder(root, shard_index, s.name)
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
