"""Daily retention."""

import dagster as dg

from analytics_assets.defs.maintenance.jobs import apply_retention

daily_retention = dg.ScheduleDefinition(
    name="daily_retention",
    job=apply_retention,
    cron_schedule="30 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="03:30 UTC: apply the retention limits.",
)
