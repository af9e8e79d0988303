"""One place for the feature columns: the snapshot SQL's columns (``FEATURE_COLUMNS``) are
exactly the fields of the Feast views over the snapshots, with matching types, and every
feature a feature service serves is one of them."""

from __future__ import annotations

from analytics_assets import settings
from analytics_assets.lib.feast_repo import repo_contents
from analytics_assets.lib.names import FEATURE_SERVICES, SNAPSHOT_SOURCE
from analytics_assets.lib.snapshots import FEATURE_COLUMNS

FEAST_TYPES = {"BIGINT": "Int64", "DOUBLE": "Float64"}


def test_feature_columns_are_the_feast_views_fields() -> None:
    contents = repo_contents(settings.feature_repo_path(), "customer_analytics")
    views = [v for v in contents.feature_views if v.batch_source.name == SNAPSHOT_SOURCE]
    assert views
    fields = {f.name: str(f.dtype) for view in views for f in view.schema}
    declared = sum(len(view.schema) for view in views)
    assert declared == len(fields), "a feature is declared in two views"
    assert fields == {name: FEAST_TYPES[sql] for name, sql in FEATURE_COLUMNS.items()}
    services = {s.name: s for s in contents.feature_services}
    assert set(services) == set(FEATURE_SERVICES)
    for service in services.values():
        for projection in service.feature_view_projections:
            assert {f.name for f in projection.features} <= set(FEATURE_COLUMNS)
