"""A ground-truth scan for a customer id, for the erasure tests and benchmark: every file under
a folder byte by byte (SQLite files and their WAL raw), Parquet files decoded as well (their
pages are compressed), and every key and value of a Redis database. It knows the id, which the
product's own ``--verify`` (working from a receipt's salted hashes) does not."""

from __future__ import annotations

import os
from pathlib import Path


def files_with(root: Path, needle: str) -> list[str]:
    """Paths (relative to ``root``) of files whose bytes or decoded Parquet values hold
    ``needle``."""
    raw = needle.encode()
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            try:
                data = path.read_bytes()
            except (FileNotFoundError, PermissionError, IsADirectoryError):
                continue
            if raw in data or (name.endswith(".parquet") and _parquet_holds(path, needle)):
                found.append(str(path.relative_to(root)))
    return sorted(found)


def _parquet_holds(path: Path, needle: str) -> bool:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception:  # not readable as Parquet: its raw bytes were scanned
        return False
    for column in table.columns:
        for value in column.to_pylist():
            if value is not None and needle in str(value):
                return True
    return False


def redis_with(client, needle: str) -> list[bytes]:
    """Keys of a Redis database whose name or any field or value holds ``needle``."""
    raw = needle.encode()
    found = []
    for key in client.scan_iter(count=10_000):
        if raw in key:
            found.append(key)
            continue
        kind = client.type(key)
        if kind == b"hash":
            items = client.hgetall(key)
            if any(raw in k or raw in v for k, v in items.items()):
                found.append(key)
        elif kind == b"string" and raw in (client.get(key) or b""):
            found.append(key)
    return found
