"""Where the offline store reads: the daily snapshots the ``customer_features`` asset writes."""

from feast import FileSource
from feast.data_format import ParquetFormat

from analytics_assets import settings
from analytics_assets.lib.names import SNAPSHOT_SOURCE

customer_features_source = FileSource(
    name=SNAPSHOT_SOURCE,
    path=str(settings.feature_snapshots_dir() / "*.parquet"),
    file_format=ParquetFormat(),
    # a snapshot is valid from the end of its as-of day: it holds only events before then
    timestamp_field="event_timestamp",
    created_timestamp_column="created_at",
    description="One row per customer per as-of day (Parquet file per day), from Dagster.",
)
