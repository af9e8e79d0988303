"""Jobs of the monitoring domain."""

import dagster as dg

check_models = dg.define_asset_job(
    "check_models",
    selection=dg.AssetSelection.groups("monitoring"),
    description="drift_report and model_performance.",
)
