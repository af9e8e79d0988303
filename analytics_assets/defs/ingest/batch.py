"""One landed file through read -> validate -> clean -> dedupe -> commit.

This is the body of the ``ingest_batch`` asset, kept free of Dagster so the benchmark and the
tests run exactly what the asset runs.
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl

from analytics_assets.defs.ingest import tables
from analytics_assets.defs.ingest.schema import event_dtypes
from analytics_assets.defs.ingest.transforms import (
    QUARANTINE_SCHEMA,
    Reason,
    UnreadableFileError,
    ValidatedBatch,
    parse_batch,
    validate_batch,
)


@dataclass
class BatchOutcome:
    file: tables.BatchFile
    result: tables.CommitResult
    seconds: float
    validated: ValidatedBatch | None = None
    extra_columns: list[str] = field(default_factory=list)
    file_error: str | None = None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ingest_file(
    conn: duckdb.DuckDBPyConnection,
    path: Path,
    batch_id: str,
    landed_at: datetime | None = None,
) -> BatchOutcome:
    """Ingest ``path`` as batch ``batch_id``, replacing whatever the batch stored before.

    A file that cannot be read at all is committed as a single ``file_unreadable`` record;
    moving it out of the landing zone is the caller's business.
    """
    started = time.perf_counter()
    data = path.read_bytes()
    # hashlib releases the GIL on large buffers: hash while polars parses
    with ThreadPoolExecutor(max_workers=1) as pool:
        digest = pool.submit(_sha256, data)
        try:
            raw = parse_batch(data, path.name)
            validated = validate_batch(raw)
            file_error = None
        except UnreadableFileError as exc:
            raw, validated, file_error = None, None, str(exc)
        info = tables.BatchFile(batch_id, path.name, digest.result(), len(data), landed_at)
    if file_error is not None:
        record = pl.DataFrame(
            [{"record_number": None, "reason": Reason.FILE_UNREADABLE, "detail": file_error}],
            schema=QUARANTINE_SCHEMA,
        )
        empty = pl.DataFrame(schema={**event_dtypes(), "record_number": pl.Int64})
        result = tables.commit_batch(
            conn, info, empty, record, records_read=1, status="file_quarantined"
        )
        return BatchOutcome(info, result, time.perf_counter() - started, file_error=file_error)
    result = tables.commit_batch(
        conn, info, validated.clean, validated.quarantined, records_read=raw.records
    )
    return BatchOutcome(
        info,
        result,
        time.perf_counter() - started,
        validated=validated,
        extra_columns=raw.extra_columns,
    )
