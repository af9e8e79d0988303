"""Files written atomically (Parquet, text): what every domain and the scoring service write
with. Readers see the old file or the new one, never half of one."""

from __future__ import annotations

import os
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
