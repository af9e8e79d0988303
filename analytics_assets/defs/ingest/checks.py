"""Checks on the ingested batch, run in the same run right after it is committed."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from analytics_assets.defs.ingest import tables
from analytics_assets.defs.ingest.partitions import batches
from analytics_assets.defs.ingest.schema import REQUIRED_COLUMNS
from analytics_assets.resources import WAREHOUSE_POOL


@dg.asset_check(
    asset="events",
    blocking=True,
    partitions_def=batches,
    pool=WAREHOUSE_POOL,
    description="Every record read from the file is stored: records read == clean + quarantined.",
)
def rows_reconcile(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    batch_id = context.partition_key
    with warehouse.get_connection() as conn:
        ledger = tables.ledger_row(conn, batch_id)
        clean, quarantined = tables.stored_counts(conn, batch_id)
    if ledger is None:
        return dg.AssetCheckResult(passed=False, metadata={"error": "no ledger row for batch"})
    return dg.AssetCheckResult(
        passed=ledger["rows_in"] == clean + quarantined,
        metadata={"rows_in": ledger["rows_in"], "clean": clean, "quarantined": quarantined},
    )


@dg.asset_check(
    asset="events",
    blocking=True,
    partitions_def=batches,
    pool=WAREHOUSE_POOL,
    description="No event_id appears twice anywhere in events.",
)
def unique_event_ids(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    with warehouse.get_connection() as conn:
        count, examples = tables.duplicate_event_ids(conn)
    return dg.AssetCheckResult(
        passed=count == 0, metadata={"duplicated_event_ids": count, "examples": examples}
    )


@dg.asset_check(
    asset="events",
    partitions_def=batches,
    pool=WAREHOUSE_POOL,
    description="The batch's stored events have every required column filled.",
)
def required_columns_not_null(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    with warehouse.get_connection() as conn:
        nulls = tables.null_required_counts(conn, context.partition_key, REQUIRED_COLUMNS)
    return dg.AssetCheckResult(
        passed=not any(nulls.values()), metadata={"nulls": dg.MetadataValue.json(nulls)}
    )


@dg.asset_check(
    asset="raw_events",
    partitions_def=batches,
    pool=WAREHOUSE_POOL,
    description="The landed file could be read at all (otherwise it was moved to quarantine/).",
)
def file_readable(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    with warehouse.get_connection() as conn:
        ledger = tables.ledger_row(conn, context.partition_key)
        reasons = tables.file_errors(conn, context.partition_key)
    passed = ledger is not None and ledger["status"] != "file_quarantined"
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=None if passed else f"file quarantined: {'; '.join(reasons)}",
        metadata={"status": ledger["status"] if ledger else "missing"},
    )
