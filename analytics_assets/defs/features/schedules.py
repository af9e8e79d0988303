"""Daily: the Feast registry applied and the online store brought up to the newest snapshot."""

import dagster as dg

from analytics_assets.defs.features.jobs import refresh_online_features

daily_online_features = dg.ScheduleDefinition(
    name="daily_online_features",
    job=refresh_online_features,
    cron_schedule="45 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="00:45 UTC, after daily_analytics: the online store serves today's snapshot.",
)
