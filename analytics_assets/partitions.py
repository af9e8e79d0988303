"""The partitions several domains share: batches (ingest, the streaming lane) and UTC days
(the day tables and snapshots)."""

import dagster as dg

from analytics_assets.settings import FIRST_DAY

batches = dg.DynamicPartitionsDefinition(name="batches")
"""One dynamic partition per landed micro-batch file."""

days = dg.DailyPartitionsDefinition(start_date=FIRST_DAY, end_offset=1, timezone="UTC")
"""Derived tables are partitioned by UTC day, from the first day events are accepted."""
