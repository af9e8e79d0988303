"""The landing zone: how batch files are named, written atomically, listed and claimed.

A batch id is derived from the file name: the name's stem when it is a safe identifier, or a
slug plus a hash of the full name otherwise. Raw file names never reach SQL or partition keys.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from analytics_assets.lib.atomic_files import file_sha256

SUFFIXES: tuple[str, ...] = (".jsonl.gz", ".ndjson.gz", ".jsonl", ".ndjson", ".json", ".parquet")
TEMP_PREFIXES: tuple[str, ...] = (".", "_", "~")
TEMP_SUFFIXES: tuple[str, ...] = (".tmp", ".part", ".partial", ".crdownload", ".swp")
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_SLUG = re.compile(r"[^A-Za-z0-9_-]+")


def split_suffix(name: str) -> tuple[str, str] | None:
    """``("2024-01-01", ".jsonl")`` for a batch file name, ``None`` for anything else."""
    lower = name.lower()
    for suffix in SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], lower[-len(suffix) :]
    return None


def is_temporary(name: str) -> bool:
    """Files a producer is still writing (hidden, ``*.tmp``, ``*.part`` ...) are never claimed."""
    lower = name.lower()
    return name.startswith(TEMP_PREFIXES) or lower.endswith(TEMP_SUFFIXES)


def batch_id_for(name: str) -> str | None:
    """The batch id of a landing file name, or ``None`` when it is not a batch file."""
    parts = split_suffix(name)
    if parts is None or is_temporary(name):
        return None
    stem, _ = parts
    if _SAFE_ID.match(stem) and ".." not in stem:
        return stem
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    slug = _SLUG.sub("-", stem).strip("-")[:40] or "batch"
    return f"{slug}-{digest}"


def is_valid_batch_id(batch_id: str) -> bool:
    return bool(_SAFE_ID.match(batch_id)) and ".." not in batch_id


@dataclass(frozen=True)
class LandedFile:
    path: Path
    batch_id: str
    ctime_ns: int
    size: int
    mtime_ns: int = 0

    @property
    def fingerprint(self) -> str:
        """Changes when the file under this name changes (replaced, rewritten, re-sent)."""
        text = f"{self.path.name}\0{self.size}\0{self.mtime_ns}"
        return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:12]


@dataclass(frozen=True)
class Claim:
    """What the sensor claimed for a batch: the file's name, size and content digest, carried
    in the run's tags and checked by the run before it ingests anything."""

    batch_id: str
    file_name: str
    size: int
    sha256: str

    @classmethod
    def of(cls, item: LandedFile) -> Claim:
        return cls(item.batch_id, item.path.name, item.size, file_sha256(item.path))


CLAIMS_TAG = "analytics/claims"
"""Run tag: the claims of the run's batches, as JSON ``[[batch_id, file, size, sha256], ...]``."""


def claims_tag(claims: list[Claim]) -> dict[str, str]:
    return {
        CLAIMS_TAG: json.dumps(
            [[c.batch_id, c.file_name, c.size, c.sha256] for c in claims], separators=(",", ":")
        )
    }


def claims_from_tags(tags: Mapping[str, str]) -> dict[str, Claim]:
    """The claims a run carries, by batch id (none for a run a person launched)."""
    raw = tags.get(CLAIMS_TAG)
    if not raw:
        return {}
    return {row[0]: Claim(*row) for row in json.loads(raw)}


@dataclass(frozen=True)
class Refused:
    name: str
    reason: str


def scan(root: Path) -> Iterator[LandedFile | Refused]:
    """Every batch file directly under ``root``; symlinks and escapes are refused, not followed."""
    if not root.is_dir():
        return
    real_root = root.resolve()
    with os.scandir(root) as entries:
        for entry in entries:
            name = entry.name
            if is_temporary(name) or entry.is_dir(follow_symlinks=False):
                continue
            batch_id = batch_id_for(name)
            if batch_id is None:
                yield Refused(name, "not a batch file (expected .jsonl, .jsonl.gz, .parquet ...)")
                continue
            if entry.is_symlink():
                yield Refused(name, "symbolic links are not ingested")
                continue
            path = Path(entry.path)
            if path.resolve().parent != real_root:
                yield Refused(name, "resolves outside the landing root")
                continue
            stat = entry.stat(follow_symlinks=False)
            yield LandedFile(
                path=path,
                batch_id=batch_id,
                ctime_ns=stat.st_ctime_ns,
                size=stat.st_size,
                mtime_ns=stat.st_mtime_ns,
            )


def find_archived(archive: Path, batch_id: str) -> Path | None:
    """The newest archived file of ``batch_id`` (archive/<day>/<digest>__<name>)."""
    if not archive.is_dir():
        return None
    for day in sorted((d for d in archive.iterdir() if d.is_dir()), reverse=True):
        for path in sorted(day.iterdir(), key=lambda p: p.stat().st_mtime_ns, reverse=True):
            name = path.name.partition("__")[2]
            if name and batch_id_for(name) == batch_id:
                return path
    return None


def find_batch_file(root: Path, batch_id: str) -> Path | None:
    """The landing file that carries ``batch_id`` (a direct hit first, then a scan)."""
    if is_valid_batch_id(batch_id):
        for suffix in SUFFIXES:
            candidate = root / f"{batch_id}{suffix}"
            if candidate.is_file() and not candidate.is_symlink():
                return candidate
    for item in scan(root):
        if isinstance(item, LandedFile) and item.batch_id == batch_id:
            return item.path
    return None
