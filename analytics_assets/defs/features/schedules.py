"""Daily: the Feast registry applied and the online store brought up to the newest snapshot."""

import dagster as dg

refresh_online_features = dg.define_asset_job(
    "refresh_online_features",
    selection=["feast_definitions", "online_features"],
    description="feast apply, then the newest snapshots into the online store.",
)

daily_online_features = dg.ScheduleDefinition(
    name="daily_online_features",
    job=refresh_online_features,
    cron_schedule="45 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="00:45 UTC, after daily_analytics: the online store serves today's snapshot.",
)
