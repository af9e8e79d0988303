"""One batch through parse -> validate -> clean -> dedupe -> commit, whatever its source.

A source (a landed file here, a Kafka offset range in :mod:`.kafka`) decides from its ledger
whether there is anything to do, and hands over its records as :class:`Records`: the bytes, the
record numbers in its own terms, the records it rejected itself and, through ``also``, the
ledger row that commits in the same transaction. :func:`parse_and_validate` and
:func:`commit_prepared` are the same for every source.

This is the body of the ``ingest_batch`` asset, kept free of Dagster so the benchmark and the
tests run exactly what the asset runs.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl

from analytics_assets.defs.ingest import tables
from analytics_assets.defs.ingest.landing import Claim
from analytics_assets.defs.ingest.parsing import (
    FileTooLargeError,
    RawBatch,
    UnreadableFileError,
    parse_batch,
)
from analytics_assets.defs.ingest.schema import QUARANTINE_SCHEMA, Reason, event_dtypes
from analytics_assets.defs.ingest.validation import ValidatedBatch, validate_batch
from analytics_assets.lib.atomic_files import file_sha256


class Status:
    """What became of a file: the first two commit; the others leave the warehouse as it was."""

    INGESTED = "ingested"
    FILE_QUARANTINED = "file_quarantined"
    """The whole file is one quarantine record (unreadable, too large, a re-sent name)."""
    ALREADY_COMMITTED = "already_committed"
    """The ledger has this batch with this very content (a rerun, a re-delivered file)."""


@dataclass
class BatchOutcome:
    file: tables.BatchFile
    result: tables.CommitResult
    seconds: float
    status: str = Status.INGESTED
    validated: ValidatedBatch | None = None
    extra_columns: list[str] = field(default_factory=list)
    file_error: str | None = None
    reason: str | None = None
    """The quarantine reason of a file quarantined whole."""
    extra_metadata: dict = field(default_factory=dict)
    """More for the ``events`` materialization (a Kafka range and the partition's lag)."""
    claimed_sha256: str | None = None
    """Set when the file was replaced between its claim and this run: the claim's digest (the
    content found now is what was ingested; the sensor's claim of it finds it committed)."""

    @property
    def moves_to_quarantine(self) -> bool:
        return self.status == Status.FILE_QUARANTINED

    @property
    def moves_to_archive(self) -> bool:
        return self.status in (Status.INGESTED, Status.ALREADY_COMMITTED)


@dataclass
class Records:
    """What a source hands the shared path: one batch's records and how to name them."""

    data: bytes
    format_name: str
    """The parser reads the format from the name's suffix (``.jsonl``, ``.parquet``, ``.gz``)."""
    numbers: list[int] | None = None
    """Line ``n``'s record number in the source's terms (a Kafka offset); None: ``n`` itself."""
    rejected: list[dict] = field(default_factory=list)
    """Quarantine rows for records the source rejected before parsing (:data:`QUARANTINE_SCHEMA`);
    each is one record read."""
    locate: str | None = None
    """Prefix of a quarantined record's detail, ``{}`` its number: ``partition 3 offset {}``."""
    whole: bool = True
    """A file is read whole: if no record at all can be read it is one quarantine record. A
    stream's records are each their own, quarantined one by one."""
    max_bytes: int | None = None


@dataclass
class Prepared:
    """A batch parsed and validated, ready to commit; or the error that makes it unreadable."""

    clean: pl.DataFrame | None = None
    quarantined: pl.DataFrame | None = None
    records_read: int = 0
    validated: ValidatedBatch | None = None
    extra_columns: list[str] = field(default_factory=list)
    error: UnreadableFileError | None = None


def empty_clean() -> pl.DataFrame:
    """A batch of no clean events, with the columns a commit expects."""
    return pl.DataFrame(schema={**event_dtypes(), "record_number": pl.Int64})


def _renumbered(raw: RawBatch, numbers: list[int]) -> RawBatch:
    at = pl.Series(numbers, dtype=pl.Int64)
    raw.frame = raw.frame.with_columns(record_number=at.gather(raw.frame["record_number"] - 1))
    if raw.unparseable.height:
        raw.unparseable = raw.unparseable.with_columns(
            record_number=at.gather(raw.unparseable["record_number"] - 1)
        )
    return raw


def parse_and_validate(records: Records) -> Prepared:
    """Parse, type, validate and de-duplicate within the batch; bad records are quarantine rows
    numbered and located in the source's terms, after the ones the source rejected itself."""
    try:
        raw = parse_batch(records.data, records.format_name, records.max_bytes, records.whole)
    except UnreadableFileError as exc:
        return Prepared(records_read=1, error=exc)
    if records.numbers is not None:
        raw = _renumbered(raw, records.numbers)
    if raw.frame.height:
        validated = validate_batch(raw)
        clean, quarantined = validated.clean, validated.quarantined
    else:  # a stream's batch of no readable record
        validated, clean, quarantined = None, empty_clean(), raw.unparseable
    quarantined = quarantined.select(list(QUARANTINE_SCHEMA))
    if records.locate is not None:
        quarantined = quarantined.with_columns(
            detail=pl.format(records.locate + ": {}", pl.col("record_number"), pl.col("detail"))
        )
    if records.rejected:
        rejected = pl.DataFrame(records.rejected, schema=QUARANTINE_SCHEMA)
        quarantined = pl.concat([quarantined, rejected])
    return Prepared(
        clean=clean,
        quarantined=quarantined,
        records_read=raw.records + len(records.rejected),
        validated=validated,
        extra_columns=raw.extra_columns,
    )


def commit_prepared(
    conn: duckdb.DuckDBPyConnection,
    info: tables.BatchFile,
    prepared: Prepared,
    started: float,
    also: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
) -> BatchOutcome:
    """Commit a prepared batch with its ledger row and the source's ``also``, in one
    transaction; an unreadable one as one quarantine record."""
    if prepared.error is not None:
        error = prepared.error
        return quarantine_whole(conn, info, error.reason, str(error), started, also=also)
    result = tables.commit_batch(
        conn,
        info,
        prepared.clean,
        prepared.quarantined,
        records_read=prepared.records_read,
        also=also,
    )
    return BatchOutcome(
        info,
        result,
        time.perf_counter() - started,
        validated=prepared.validated,
        extra_columns=prepared.extra_columns,
    )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def resent_batch_id(batch_id: str, sha256: str) -> str:
    """Where a re-sent name's other content is recorded: never over the batch it would
    replace."""
    return f"{batch_id}.resent-{sha256[:12]}"


def ingest_file(
    conn: duckdb.DuckDBPyConnection,
    path: Path,
    batch_id: str,
    landed_at: datetime | None = None,
    claim: Claim | None = None,
    max_bytes: int | None = None,
) -> BatchOutcome:
    """Ingest ``path`` as batch ``batch_id``: the landed-file source.

    Without a ``claim`` (a person re-materializing a partition) whatever the batch stored
    before is replaced. With the sensor's claim, the file read is the claimed name (a file
    replaced since is read as it is now, and the outcome says so), and the ledger decides:
    the same content already committed is left as it is; other content under the name of an
    ingested batch is quarantined whole (``batch_name_resent``) under its own
    id, so it never replaces the batch's events; a batch whose file was quarantined is
    replaced (a producer re-sending a fixed file).

    A file that cannot be read at all, or is over ``max_bytes`` (as stored or decompressed),
    is committed as one quarantine record; moving it out of the landing zone is the caller's
    business.
    """
    started = time.perf_counter()
    prior = tables.ledger_row(conn, batch_id) if claim is not None else None
    if claim is not None and prior is not None and prior["file_sha256"] == claim.sha256:
        info = tables.BatchFile(batch_id, claim.file_name, claim.sha256, claim.size, landed_at)
        return BatchOutcome(
            info,
            tables.result_from_ledger(conn, prior),
            time.perf_counter() - started,
            status=Status.ALREADY_COMMITTED,
        )
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        digest = file_sha256(path)
        prepared = Prepared(
            records_read=1,
            error=FileTooLargeError(
                f"{size:,} bytes, over the limit of {max_bytes:,} (ANALYTICS_MAX_FILE_BYTES); "
                "not read"
            ),
        )
    else:
        data = path.read_bytes()
        # hashlib releases the GIL on large buffers: hash while polars parses
        with ThreadPoolExecutor(max_workers=1) as pool:
            hashing = pool.submit(_sha256, data)
            prepared = parse_and_validate(Records(data, path.name, max_bytes=max_bytes))
            digest = hashing.result()
    info = tables.BatchFile(batch_id, path.name, digest, size, landed_at)
    changed = claim.sha256 if claim is not None and digest != claim.sha256 else None
    if claim is not None and prior is not None and prior["status"] == Status.INGESTED:
        detail = (
            f"batch {batch_id} was committed from {prior['file_name']} (sha256 "
            f"{prior['file_sha256'][:12]}); {path.name} carries the same batch id with other "
            f"content (sha256 {digest[:12]}). Rename the file to ingest it as a new batch."
        )
        info = tables.BatchFile(
            resent_batch_id(batch_id, digest), path.name, digest, size, landed_at
        )
        outcome = quarantine_whole(conn, info, Reason.BATCH_NAME_RESENT, detail, started)
    else:
        outcome = commit_prepared(conn, info, prepared, started)
    outcome.claimed_sha256 = changed
    return outcome


def quarantine_whole(
    conn: duckdb.DuckDBPyConnection,
    info: tables.BatchFile,
    reason: str,
    detail: str,
    started: float,
    also: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
) -> BatchOutcome:
    """Commit the batch as one quarantine record with ``reason`` (nothing of it in events)."""
    record = pl.DataFrame(
        [{"record_number": None, "reason": reason, "detail": detail}], schema=QUARANTINE_SCHEMA
    )
    result = tables.commit_batch(
        conn,
        info,
        empty_clean(),
        record,
        records_read=1,
        status=Status.FILE_QUARANTINED,
        also=also,
    )
    return BatchOutcome(
        info,
        result,
        time.perf_counter() - started,
        status=Status.FILE_QUARANTINED,
        file_error=detail,
        reason=reason,
    )
