"""Materialization metadata and run tags shared by every domain."""

import dagster as dg
import polars as pl

# Dagster's run tags for one run over a partition range (BackfillPolicy.single_run assets)
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def preview(frame: pl.DataFrame | None, rows: int = 10) -> dg.MetadataValue:
    """The first ``rows`` of ``frame`` as a markdown table the Dagster UI renders."""
    if frame is None or frame.height == 0:
        return dg.MetadataValue.md("_no rows_")
    with pl.Config(tbl_formatting="MARKDOWN", tbl_hide_dataframe_shape=True, fmt_str_lengths=60):
        return dg.MetadataValue.md(str(frame.head(rows)))


LAKE_CHECK = "lake_matches_warehouse"
"""The check, on every published table's asset, that the lake holds what the warehouse does."""


def lake_check_spec(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        LAKE_CHECK,
        asset=asset,
        description=(
            "The partitions this run published to the lake (Parquet under $ANALYTICS_HOME/lake) "
            "have the warehouse's row counts, read back from the files."
        ),
    )


def publish_lake(context, conn) -> dict[str, list] | Exception:
    """After the run's commit: publish every partition the warehouse marked as changed (this
    run's and any a killed run left), refresh the lake's catalog, and return what was published
    by table; or the error, which leaves the marks for the next run (the commit stands)."""
    import time

    from analytics_assets import settings
    from analytics_assets.lib import lake

    started = time.perf_counter()
    root = settings.lake_dir()
    try:
        published = lake.publish_pending(conn, root, settings.lake_quarantine_raw())
        views = lake.views(root, settings.predictions_dir())
        lake.refresh_catalog(settings.lake_catalog_path(), views)
    except Exception as exc:  # the commit stands; the lake catches up on the next publish
        context.log.error(f"Lake publish failed, left for the next run: {exc}")
        return exc
    grouped = lake.by_table(published)
    context.log.info(
        f"Published {len(published)} partitions of {len(grouped)} tables to {root} in "
        f"{time.perf_counter() - started:.3f}s"
    )
    return grouped


def lake_check(
    conn,
    published: dict[str, list] | Exception,
    table: str | tuple[str, ...],
    asset: str | None = None,
):
    """The ``lake_matches_warehouse`` result for ``table`` (or several tables that one asset
    writes) on ``asset``, default the table."""
    from analytics_assets import settings
    from analytics_assets.lib import lake

    names = (table,) if isinstance(table, str) else table
    asset_key = asset or names[0]
    if isinstance(published, Exception):
        return dg.AssetCheckResult(
            asset_key=asset_key,
            check_name=LAKE_CHECK,
            passed=False,
            description=f"publish failed (left for the next run): {published}",
        )
    mine = [p for name in names for p in published.get(name, [])]
    wrong = {
        (f"{name}/{day}" if len(names) > 1 else day): counts
        for name, days in lake.check(conn, settings.lake_dir(), mine).items()
        for day, counts in days.items()
    }
    days = sorted(p.day.isoformat() for p in mine if p.day is not None)
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=LAKE_CHECK,
        passed=not wrong,
        metadata={
            "partitions": len(mine),
            "rows": sum(p.rows for p in mine),
            "days": f"{days[0]} .. {days[-1]}" if days else "",
            "mismatches": dg.MetadataValue.json(
                {day: {"lake": a, "warehouse": b} for day, (a, b) in wrong.items()}
            ),
            "lake": dg.MetadataValue.path(str(settings.lake_dir() / names[0])),
        },
    )
