"""Daily retention; hourly lakehouse maintenance."""

import dagster as dg

from analytics_assets.defs.maintenance.jobs import apply_retention, maintain_lakehouse

daily_retention = dg.ScheduleDefinition(
    name="daily_retention",
    job=apply_retention,
    cron_schedule="30 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="03:30 UTC: apply the retention limits.",
)

hourly_lakehouse_maintenance = dg.ScheduleDefinition(
    name="hourly_lakehouse_maintenance",
    job=maintain_lakehouse,
    cron_schedule="17 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every hour: compact the lakehouse's small files, expire old snapshots.",
)
