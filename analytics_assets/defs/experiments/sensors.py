"""The experiments' automation: ``experiment_report`` after new looks (the looks themselves are
requested by ``events_sensor`` with the days each batch touched)."""

import dagster as dg

from analytics_assets import settings


@dg.definitions
def defs() -> dg.Definitions:
    automation = dg.AutomationConditionSensorDefinition(
        "experiments_automation",
        target=dg.AssetSelection.groups("experiments"),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=settings.analytics_interval_seconds(),
        description="Evaluates the experiments assets' automation conditions (the report).",
    )
    return dg.Definitions(sensors=[automation])
