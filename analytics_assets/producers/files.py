"""Serialize a batch of events and drop it into the landing zone atomically."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Literal

import polars as pl

from analytics_assets.lib.atomic_files import write_atomic

FileFormat = Literal["jsonl", "parquet"]


def write_batch(frame: pl.DataFrame, landing: Path, batch_id: str, fmt: FileFormat) -> Path:
    """Write ``frame`` as ``<landing>/<batch_id>.<fmt>``; readers never see a partial file."""
    buffer = io.BytesIO()
    if fmt == "parquet":
        frame.write_parquet(buffer)
    else:
        frame.write_ndjson(buffer)
    return write_atomic(landing, f"{batch_id}.{fmt}", buffer.getvalue())
