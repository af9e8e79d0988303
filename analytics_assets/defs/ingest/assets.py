"""Raw, clean and quarantined events: one landed micro-batch per partition."""

import hashlib
import time
from datetime import UTC, datetime

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from analytics_assets.defs.ingest import landing, tables
from analytics_assets.defs.ingest.partitions import batches
from analytics_assets.defs.ingest.schema import EVENT_COLUMNS, event_dtypes
from analytics_assets.defs.ingest.transforms import (
    Reason,
    UnreadableFileError,
    parse_batch,
    validate_batch,
)
from analytics_assets.resources import WAREHOUSE_POOL, LandingZone

GROUP = "ingest"
PREVIEW_ROWS = 10

EVENTS_COLUMN_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn(name, str(dtype), constraints=None) for name, dtype in event_dtypes().items()
    ]
    + [dg.TableColumn("batch_id", "String"), dg.TableColumn("ingested_at", "Datetime(UTC)")]
)


def _markdown(frame: pl.DataFrame) -> dg.MetadataValue:
    if frame.height == 0:
        return dg.MetadataValue.md("_no rows_")
    with pl.Config(tbl_formatting="MARKDOWN", tbl_hide_dataframe_shape=True, fmt_str_lengths=60):
        return dg.MetadataValue.md(str(frame.head(PREVIEW_ROWS)))


@dg.multi_asset(
    name="ingest_batch",
    specs=[
        dg.AssetSpec(
            "raw_events",
            group_name=GROUP,
            description="A landed micro-batch file as read: one partition per file.",
            kinds={"file"},
        ),
        dg.AssetSpec(
            "events",
            deps=["raw_events"],
            group_name=GROUP,
            description=(
                "Validated, cleaned events, unique by event_id, timestamps in UTC. "
                "The source of truth for everything downstream."
            ),
            kinds={"duckdb"},
            metadata={
                "dagster/column_schema": EVENTS_COLUMN_SCHEMA,
                "dagster/table_name": "events",
            },
        ),
        dg.AssetSpec(
            "quarantined_events",
            deps=["raw_events"],
            group_name=GROUP,
            description=(
                "Rows (or whole files) that failed validation, each with a reason code and "
                "the raw record, so nothing received is lost."
            ),
            kinds={"duckdb"},
            metadata={"dagster/table_name": "quarantined_events"},
        ),
    ],
    partitions_def=batches,
    pool=WAREHOUSE_POOL,
)
def ingest_batch(
    context: dg.AssetExecutionContext, landing_zone: LandingZone, warehouse: DuckDBResource
):
    """Read one landed file, validate it against EventSchema and commit it in one transaction."""
    batch_id = context.partition_key
    path = landing.find_batch_file(landing_zone.root_path, batch_id)
    if path is None:
        raise dg.Failure(
            description=f"No file for batch {batch_id!r} in the landing zone.",
            metadata={"landing_root": landing_zone.root},
        )
    stat = path.stat()
    landed_at = datetime.fromtimestamp(stat.st_ctime, tz=UTC)
    started = time.perf_counter()
    data = path.read_bytes()
    batch_file = tables.BatchFile(
        batch_id=batch_id,
        file_name=path.name,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        landed_at=landed_at,
    )
    try:
        raw = parse_batch(data, path.name)
    except UnreadableFileError as exc:
        moved_to = landing_zone.quarantine_file(path, batch_id)
        context.log.error(
            f"Batch {batch_id}: file {path.name} cannot be read ({exc}); "
            f"moved to {moved_to} and recorded in quarantined_events."
        )
        record = pl.DataFrame(
            [
                {
                    "record_number": None,
                    "reason": Reason.FILE_UNREADABLE,
                    "detail": str(exc),
                    "raw": None,
                }
            ],
            schema={
                "record_number": pl.Int64,
                "reason": pl.String,
                "detail": pl.String,
                "raw": pl.String,
            },
        )
        clean = pl.DataFrame(schema={**event_dtypes(), "record_number": pl.Int64})
        with warehouse.get_connection() as conn:
            result = tables.commit_batch(
                conn, batch_file, clean, record, records_read=1, status="file_quarantined"
            )
        yield from _results(batch_file, result, file_error=str(exc), moved_to=str(moved_to))
        return
    validated = validate_batch(raw)
    with warehouse.get_connection() as conn:
        result = tables.commit_batch(
            conn, batch_file, validated.clean, validated.quarantined, records_read=raw.records
        )
    elapsed = time.perf_counter() - started
    context.log.info(
        f"Batch {batch_id}: {result.rows_in} records, {result.clean} clean, "
        f"{result.quarantined} quarantined in {elapsed:.2f}s"
    )
    yield from _results(
        batch_file,
        result,
        clean_preview=validated.clean.select(EVENT_COLUMNS),
        quarantine_preview=validated.quarantined,
        extra_columns=raw.extra_columns,
        seconds=elapsed,
    )


def _results(
    batch_file: tables.BatchFile,
    result: tables.CommitResult,
    *,
    file_error: str | None = None,
    moved_to: str | None = None,
    clean_preview: pl.DataFrame | None = None,
    quarantine_preview: pl.DataFrame | None = None,
    extra_columns: list[str] | None = None,
    seconds: float | None = None,
):
    latency = (
        (result.committed_at - batch_file.landed_at).total_seconds()
        if batch_file.landed_at
        else None
    )
    raw_meta: dict[str, object] = {
        "file": batch_file.file_name,
        "bytes": batch_file.size,
        "sha256": batch_file.sha256,
        "rows": result.rows_in,
        "status": "file_quarantined" if file_error else "ingested",
    }
    if file_error:
        raw_meta["file_error"] = file_error
        raw_meta["moved_to"] = dg.MetadataValue.path(moved_to)
    if extra_columns:
        raw_meta["ignored_columns"] = extra_columns
    yield dg.MaterializeResult(asset_key="raw_events", metadata=raw_meta)
    events_meta: dict[str, object] = {
        "dagster/row_count": result.clean,
        "days_touched": [d.isoformat() for d in result.days_touched],
        "landed_to_commit_s": latency,
        "preview": _markdown(clean_preview if clean_preview is not None else pl.DataFrame()),
    }
    if seconds is not None:
        events_meta["ingest_seconds"] = round(seconds, 3)
    yield dg.MaterializeResult(asset_key="events", metadata=events_meta)
    yield dg.MaterializeResult(
        asset_key="quarantined_events",
        metadata={
            "dagster/row_count": result.quarantined,
            "by_reason": dg.MetadataValue.json(result.reasons),
            "preview": _markdown(
                quarantine_preview if quarantine_preview is not None else pl.DataFrame()
            ),
        },
    )
