"""Checks on the ingested batch, run in the same run right after it is committed."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from analytics_assets.defs.ingest import tables
from analytics_assets.defs.ingest.schema import REQUIRED_COLUMNS
from analytics_assets.partitions import batches


@dg.asset_check(
    asset="events",
    blocking=True,
    partitions_def=batches,
    description="Every record read from the file is stored: records read == clean + quarantined.",
)
def rows_reconcile(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    totals = {"rows_in": 0, "clean": 0, "quarantined": 0}
    wrong: dict[str, str] = {}
    with warehouse.get_connection() as conn:
        for batch_id in context.partition_keys:
            ledger = tables.ledger_row(conn, batch_id)
            clean, quarantined = tables.stored_counts(conn, batch_id)
            if ledger is None:
                wrong[batch_id] = "no ledger row for batch"
                continue
            if ledger["rows_in"] != clean + quarantined:
                wrong[batch_id] = f"{ledger['rows_in']} read, {clean} + {quarantined} stored"
            totals["rows_in"] += ledger["rows_in"]
            totals["clean"] += clean
            totals["quarantined"] += quarantined
    metadata: dict = dict(totals)
    if wrong:
        metadata["error"] = dg.MetadataValue.json(wrong)
    return dg.AssetCheckResult(passed=not wrong, metadata=metadata)


@dg.asset_check(
    asset="events",
    blocking=True,
    partitions_def=batches,
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
    description="The batch's stored events have every required column filled.",
)
def required_columns_not_null(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    nulls = dict.fromkeys(REQUIRED_COLUMNS, 0)
    with warehouse.get_connection() as conn:
        for batch_id in context.partition_keys:
            found = tables.null_required_counts(conn, batch_id, REQUIRED_COLUMNS)
            nulls = {column: nulls[column] + found[column] for column in REQUIRED_COLUMNS}
    return dg.AssetCheckResult(
        passed=not any(nulls.values()), metadata={"nulls": dg.MetadataValue.json(nulls)}
    )


@dg.asset_check(
    asset="raw_events",
    partitions_def=batches,
    description="The landed file could be read at all (otherwise it was moved to quarantine/).",
)
def file_readable(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    statuses: dict[str, str] = {}
    reasons: list[str] = []
    with warehouse.get_connection() as conn:
        for batch_id in context.partition_keys:
            ledger = tables.ledger_row(conn, batch_id)
            statuses[batch_id] = ledger["status"] if ledger else "missing"
            errors = tables.file_errors(conn, batch_id)
            reasons += (
                errors if len(context.partition_keys) == 1 else [f"{batch_id}: {r}" for r in errors]
            )
    passed = all(status not in ("file_quarantined", "missing") for status in statuses.values())
    status = next(iter(statuses.values())) if len(statuses) == 1 else statuses
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=None if passed else f"file quarantined: {'; '.join(reasons)}",
        metadata={"status": dg.MetadataValue.json(status) if len(statuses) > 1 else status},
    )
