"""Feature automation: the registry and the online store follow new feature snapshots."""

import dagster as dg

from analytics_assets import settings


@dg.definitions
def defs() -> dg.Definitions:
    automation = dg.AutomationConditionSensorDefinition(
        "features_automation",
        target=dg.AssetSelection.groups("features"),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=settings.analytics_interval_seconds(),
        description=(
            "Evaluates the feature assets' automation conditions: feast_definitions applies "
            "the repo when it is missing or feature_repo/ changed; online_features writes new "
            "snapshots to the online store."
        ),
    )
    return dg.Definitions(sensors=[automation])
