"""Jobs of the analytics domain: a day's tables and snapshot, and the audit."""

import dagster as dg

from analytics_assets.partitions import days

# customer_features (features domain) rides along: a day's snapshot needs that day's sessions
# and activity. Selected by key, so this domain imports nothing from the features domain.
DAY_ASSETS = ("sessions", "customer_daily", "kpis_hourly", "kpis_daily", "customer_features")
ANALYTICS_ASSETS = dg.AssetSelection.assets(*DAY_ASSETS)

EXPERIMENT_LOOKS = dg.AssetSelection.assets("experiment_looks")
"""The experiments domain's daily looks: requested by ``events_sensor`` with the days touched."""

build_day = dg.define_asset_job(
    "build_day",
    selection=ANALYTICS_ASSETS,
    partitions_def=days,
    description="Sessions, customer_daily, KPIs and the feature snapshot of one day.",
)
refresh_audit = dg.define_asset_job(
    "refresh_audit",
    selection=["customer_base_audit"],
    description="The customer-base audit over every day so far.",
)
