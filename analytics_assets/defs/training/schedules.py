"""Weekly: retrain both models on the newest matured labels, through the same gate."""

import dagster as dg

from analytics_assets.defs.training import jobs

weekly_retraining = dg.ScheduleDefinition(
    name="weekly_retraining",
    job=jobs.retrain_models,
    cron_schedule="0 2 * * 1",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Mondays 02:00 UTC: retrain_models; the gate promotes only a better challenger.",
)
