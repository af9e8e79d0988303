"""Jobs of the maintenance domain."""

import dagster as dg

from analytics_assets.defs.maintenance.lakehouse import maintain_lakehouse_op
from analytics_assets.defs.maintenance.retention import apply_retention_op


@dg.job(
    description="Retention: old archive files, prediction logs, reports, runs and model "
    "versions removed, by the limits in the environment (README, Retention)."
)
def apply_retention():
    apply_retention_op()


@dg.job(
    description="The lakehouse: small files compacted, snapshots older than "
    "ANALYTICS_SNAPSHOT_RETENTION_DAYS expired, files no snapshot reads deleted."
)
def maintain_lakehouse():
    maintain_lakehouse_op()
