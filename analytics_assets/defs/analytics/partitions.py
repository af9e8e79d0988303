"""Derived tables are partitioned by UTC day, from the first day events are accepted."""

import dagster as dg

from analytics_assets.settings import FIRST_DAY

days = dg.DailyPartitionsDefinition(start_date=FIRST_DAY, end_offset=1, timezone="UTC")
