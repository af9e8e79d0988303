"""``maintain_lakehouse``: the hourly job that compacts the lakehouse's small files, expires
snapshots past the retention and deletes the files nothing reads any more
(``lib/lakehouse_maintenance.py``)."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from analytics_assets import settings
from analytics_assets.lib import lakehouse_maintenance


@dg.op
def maintain_lakehouse_op(context: dg.OpExecutionContext, warehouse: DuckDBResource) -> dict:
    with warehouse.get_connection() as conn:
        done = lakehouse_maintenance.maintain(
            conn, settings.snapshot_retention_days(), log=context.log.info
        )
    context.add_output_metadata(
        {
            "files_before": sum(done.files_before.values()),
            "files_after": sum(done.files_after.values()),
            "files_by_table": dg.MetadataValue.json(
                {t: [done.files_before.get(t, 0), n] for t, n in done.files_after.items()}
            ),
            "snapshots_expired": done.snapshots_expired,
            "files_deleted": done.files_deleted,
            "orphans_deleted": done.orphans_deleted,
            "seconds": dg.MetadataValue.json(done.seconds),
            "retention_days": settings.snapshot_retention_days(),
        }
    )
    return {"files_after": sum(done.files_after.values())}
