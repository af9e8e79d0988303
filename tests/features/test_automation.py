"""The feature assets' automation conditions, evaluated the way the daemon evaluates them."""

from __future__ import annotations

import dagster as dg

from analytics_assets.definitions import defs

FEATURES = dg.AssetSelection.assets("feast_definitions", "online_features")


def requested(instance, cursor=None):
    result = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=FEATURES, cursor=cursor
    )
    keys = {
        key
        for key in ("feast_definitions", "online_features")
        if result.get_num_requested(dg.AssetKey(key))
    }
    return keys, result.cursor


def test_apply_once_then_only_the_online_store_follows_new_snapshots(instance) -> None:
    keys, cursor = requested(instance)
    assert keys == set()  # no snapshots yet
    instance.report_runless_asset_event(
        dg.AssetMaterialization("customer_features", partition="2024-03-10")
    )
    keys, cursor = requested(instance, cursor)
    assert keys == {"feast_definitions", "online_features"}  # one run, in that order
    instance.report_runless_asset_event(dg.AssetMaterialization("feast_definitions"))
    instance.report_runless_asset_event(dg.AssetMaterialization("online_features"))
    keys, cursor = requested(instance, cursor)
    assert keys == set()
    # a new snapshot: the online store follows, `feast apply` does not run again
    instance.report_runless_asset_event(
        dg.AssetMaterialization("customer_features", partition="2024-03-11")
    )
    keys, cursor = requested(instance, cursor)
    assert keys == {"online_features"}
