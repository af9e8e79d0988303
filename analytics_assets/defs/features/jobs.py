"""Jobs of the features domain."""

import dagster as dg

refresh_online_features = dg.define_asset_job(
    "refresh_online_features",
    selection=["feast_definitions", "online_features"],
    description="feast apply, then the newest snapshots into the online store.",
)
