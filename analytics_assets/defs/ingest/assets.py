"""Raw, clean and quarantined events: one landed micro-batch per partition."""

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from analytics_assets.defs.ingest import landing
from analytics_assets.defs.ingest.batch import BatchOutcome, ingest_file
from analytics_assets.defs.ingest.partitions import batches
from analytics_assets.defs.ingest.schema import EVENT_COLUMNS, event_dtypes
from analytics_assets.metadata import preview
from analytics_assets.resources import WAREHOUSE_POOL, LandingZone

GROUP = "ingest"

EVENTS_COLUMN_SCHEMA = dg.TableSchema(
    columns=[dg.TableColumn(name, str(dtype)) for name, dtype in event_dtypes().items()]
    + [dg.TableColumn("batch_id", "String"), dg.TableColumn("ingested_at", "Datetime(UTC)")]
)


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
    """Read one landed file, validate it against the event schema, commit it in one transaction."""
    batch_id = context.partition_key
    path = landing.find_batch_file(landing_zone.root_path, batch_id)
    if path is None:
        raise dg.Failure(
            description=f"No file for batch {batch_id!r} in the landing zone.",
            metadata={"landing_root": landing_zone.root},
        )
    landed_at = datetime.fromtimestamp(path.stat().st_ctime, tz=UTC)
    with warehouse.get_connection() as conn:
        outcome = ingest_file(conn, path, batch_id, landed_at)
    result = outcome.result
    moved_to = None
    if outcome.file_error:
        # after the commit: a crash in between re-ingests the same file to the same result
        moved_to = landing_zone.quarantine_file(path, batch_id)
        context.log.error(
            f"Batch {batch_id}: file {path.name} cannot be read ({outcome.file_error}); "
            f"moved to {moved_to} and recorded in quarantined_events."
        )
    else:
        context.log.info(
            f"Batch {batch_id}: {result.rows_in} records, {result.clean} clean, "
            f"{result.quarantined} quarantined in {outcome.seconds:.2f}s"
        )
    yield from _results(outcome, moved_to)


def _results(outcome: BatchOutcome, moved_to: Path | None):
    batch_file, result = outcome.file, outcome.result
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
        "status": "file_quarantined" if outcome.file_error else "ingested",
    }
    if outcome.file_error:
        raw_meta["file_error"] = outcome.file_error
        raw_meta["moved_to"] = dg.MetadataValue.path(str(moved_to))
    if outcome.extra_columns:
        raw_meta["ignored_columns"] = outcome.extra_columns
    yield dg.MaterializeResult(asset_key="raw_events", metadata=raw_meta)
    validated = outcome.validated
    yield dg.MaterializeResult(
        asset_key="events",
        metadata={
            "dagster/row_count": result.clean,
            "days_touched": [d.isoformat() for d in result.days_touched],
            "landed_to_commit_s": latency,
            "ingest_seconds": round(outcome.seconds, 3),
            "preview": preview(validated.clean.select(EVENT_COLUMNS) if validated else None),
        },
    )
    yield dg.MaterializeResult(
        asset_key="quarantined_events",
        metadata={
            "dagster/row_count": result.quarantined,
            "by_reason": dg.MetadataValue.json(result.reasons),
            "preview": preview(validated.quarantined if validated else None),
        },
    )
