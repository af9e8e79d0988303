"""Materialization metadata and run tags shared by every domain."""

import dagster as dg
import polars as pl

# Dagster's run tags for one run over a partition range (BackfillPolicy.single_run assets)
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


HIDDEN_COLUMNS = ("customer_id", "session_id", "raw")
"""Columns a preview never shows the values of: a customer's id (session ids embed it) or
record. Dagster's event log keeps metadata for good, where an erasure cannot reach; the
lakehouse, which it can, has the rows."""


def preview(frame: pl.DataFrame | None, rows: int = 10) -> dg.MetadataValue:
    """The first ``rows`` of ``frame`` as a markdown table the Dagster UI renders, with the
    values of :data:`HIDDEN_COLUMNS` shown as ``(hidden)``."""
    if frame is None or frame.height == 0:
        return dg.MetadataValue.md("_no rows_")
    hidden = [c for c in frame.columns if c in HIDDEN_COLUMNS]
    frame = frame.head(rows).with_columns(
        pl.when(pl.col(c).is_null()).then(None).otherwise(pl.lit("(hidden)")).alias(c)
        for c in hidden
    )
    with pl.Config(tbl_formatting="MARKDOWN", tbl_hide_dataframe_shape=True, fmt_str_lengths=60):
        return dg.MetadataValue.md(str(frame.head(rows)))


FILES_CHECK = "data_files_present"
"""The check, on every asset that writes lakehouse tables, that each data file the tables'
current snapshot reads exists: a file deleted by hand is named, never a silently wrong count."""


def files_check_spec(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        FILES_CHECK,
        asset=asset,
        description=(
            "Every Parquet file the lakehouse's current snapshot of this asset's tables reads "
            "exists (a missing one is named with its table)."
        ),
    )


def files_check(conn, table: str | tuple[str, ...], asset: str | None = None):
    """The ``data_files_present`` result for ``table`` (or the tables one asset writes) on
    ``asset`` (default: the table), with the lakehouse snapshot the run's commit made."""
    from analytics_assets.lib import lakehouse

    names = (table,) if isinstance(table, str) else table
    counted, missing = 0, {}
    for name in names:
        if not lakehouse.exists(conn, name):
            continue
        files, gone = lakehouse.missing_files(conn, name)
        counted += files
        if gone:
            missing[name] = gone
    return dg.AssetCheckResult(
        asset_key=asset or names[0],
        check_name=FILES_CHECK,
        passed=not missing,
        description=(
            "; ".join(f"{t}: {len(g)} data files missing, e.g. {g[0]}" for t, g in missing.items())
            or None
        ),
        metadata={
            "files": counted,
            "missing": dg.MetadataValue.json({t: g[:20] for t, g in missing.items()}),
            "lakehouse_snapshot": lakehouse.current_snapshot(conn),
        },
    )
