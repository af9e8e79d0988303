"""Jobs of the maintenance domain."""

import dagster as dg

from analytics_assets.defs.maintenance.retention import apply_retention_op


@dg.job(
    description="Retention: old archive files, prediction logs, reports, runs and model "
    "versions removed, by the limits in the environment (README, Retention)."
)
def apply_retention():
    apply_retention_op()
