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
