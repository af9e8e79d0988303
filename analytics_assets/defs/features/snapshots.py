"""The offline feature store's files: one Parquet file per as-of day, replaced atomically."""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import date
from pathlib import Path

import duckdb
import pyarrow.parquet as pq


def file_for(directory: Path, as_of: date) -> Path:
    return directory / f"{as_of.isoformat()}.parquet"


def replace_days(
    relation: duckdb.DuckDBPyRelation, directory: Path, days: list[date]
) -> dict[str, int]:
    """Make the files of ``days`` hold exactly ``relation``'s rows of those days.

    The rows are written to a staging folder first, then each day's file is renamed into
    place, so a reader sees a day's old file or its new one, never half of one; re-running
    replaces, never appends. Days without rows lose their file. Returns rows per day.
    """
    directory.mkdir(parents=True, exist_ok=True)
    staging = directory / f".staging-{uuid.uuid4().hex}"
    try:
        relation.write_parquet(
            str(staging),
            partition_by=["as_of"],
            write_partition_columns=True,
            filename_pattern="part",
            compression="zstd",
        )
        written: dict[str, int] = {}
        for part in sorted(staging.glob("as_of=*")):
            day = date.fromisoformat(part.name.removeprefix("as_of="))
            files = list(part.glob("*.parquet"))
            if len(files) != 1:
                raise RuntimeError(f"expected one file for {day}, found {files}")
            written[day.isoformat()] = pq.ParquetFile(files[0]).metadata.num_rows
            os.replace(files[0], file_for(directory, day))
        for day in days:
            if day.isoformat() not in written:
                file_for(directory, day).unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dict(sorted(written.items()))
