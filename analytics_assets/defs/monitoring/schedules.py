"""Daily: drift and realized performance, whether or not anything was promoted."""

import dagster as dg

from analytics_assets.defs.monitoring.jobs import check_models

daily_monitoring = dg.ScheduleDefinition(
    name="daily_monitoring",
    job=check_models,
    cron_schedule="30 1 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="01:30 UTC: the day's drift report and the champion's realized AUC (labels "
    "mature a day at a time), which the retraining sensor reads.",
)
