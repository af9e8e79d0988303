"""Files written and moved atomically: what every domain, the producers and the scoring service
write with. Readers see the old file or the new one, never half of one."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl


def write_parquet(frame: pl.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` through a temporary file renamed into place: readers see the
    old file or the new one, never half of one."""
    with temporary_beside(path) as tmp:
        frame.write_parquet(tmp)
        os.replace(tmp, path)


class temporary_beside:
    """A fresh hidden file name in ``path``'s folder, unique to this writer (two processes
    writing the same file never share a temporary), removed if the block fails."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.chmod(name, 0o644)  # mkstemp's 0600 would be the final file's mode
        self.tmp = Path(name)

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, *exc) -> None:
        self.tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    """``path.write_text(text)``, atomically (see :func:`write_parquet`)."""
    with temporary_beside(path) as tmp:
        tmp.write_text(text)
        os.replace(tmp, path)


def write_atomic(directory: Path, name: str, data: bytes) -> Path:
    """Write ``data`` as ``directory/name``, flushed to disk before it is renamed into place
    (what a producer dropping a file into the landing zone does)."""
    final = directory / name
    with temporary_beside(final) as tmp:
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    return final


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def bounded_name(prefix: str, name: str, limit: int = 200) -> str:
    """``prefix + name`` cut to ``limit`` UTF-8 bytes (file systems allow 255), the name's end
    (its suffix) kept."""
    encoded = name.encode("utf-8", "surrogateescape")
    room = limit - len(prefix.encode())
    if len(encoded) > room:
        encoded = encoded[-room:]
        name = encoded.decode("utf-8", "ignore")  # a character cut in two is dropped
    return prefix + name


def move_unique(path: Path, directory: Path, sha256: str) -> Path:
    """Move ``path`` into ``directory`` under a bounded name that carries its digest; the same
    content moved twice lands on the same name (idempotent), different content never
    overwrites."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / bounded_name(f"{sha256[:12]}__", path.name)
    try:
        os.replace(path, target)
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
        shutil.move(path, target)  # another file system: copy, then remove
    return target
