"""Daily: yesterday's tables and snapshot rebuilt once it is complete, then the audit."""

from datetime import timedelta

import dagster as dg

from analytics_assets.defs.analytics.jobs import build_day, refresh_audit


@dg.schedule(
    name="daily_analytics",
    job=build_day,
    cron_schedule="15 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="00:15 UTC: yesterday's analytics tables and feature snapshot, now complete "
    "(and the snapshot's recency and tenure, which move every day).",
)
def daily_analytics(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    day = (context.scheduled_execution_time - timedelta(days=1)).date().isoformat()
    return dg.RunRequest(run_key=day, partition_key=day)


daily_audit = dg.ScheduleDefinition(
    name="daily_audit",
    job=refresh_audit,
    cron_schedule="0 1 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="01:00 UTC: the customer-base audit, with the day the analytics added.",
)
