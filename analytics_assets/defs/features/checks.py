"""Checks that the online store serves what the offline snapshots say is latest."""

from datetime import timedelta

import dagster as dg
import polars as pl

from analytics_assets import settings
from analytics_assets.defs.features import offline
from analytics_assets.lib import snapshots
from analytics_assets.lib.online_store import JOIN_KEY
from analytics_assets.resources import FeastRepo

SAMPLE = 500


def online_vs_offline(store, directory, sample: int = SAMPLE, seed: int = 0) -> pl.DataFrame:
    """For a sample of customers, each view's offline latest row beside what the online store
    serves through the SDK: one row per (customer, view) with ``matches`` (every value equal,
    or the online row is a newer one ``streamed_features`` wrote), ``online_is_current``
    (online timestamp not older than the offline one) and ``streamed`` (online is newer)."""
    newest = snapshots.newest_timestamp(directory)
    if newest is None:
        return pl.DataFrame()
    results = []
    for view in offline.views_over_snapshots(store):
        names = [f.name for f in view.features]
        until = newest + timedelta(seconds=1)
        latest = pl.from_arrow(snapshots.latest_rows(directory, None, until, names))
        picked = latest.sample(min(sample, latest.height), seed=seed)
        served = store.get_online_features(
            features=[f"{view.name}:{n}" for n in names],
            entity_rows=[{JOIN_KEY: c} for c in picked[JOIN_KEY]],
            full_feature_names=True,
        ).to_dict(include_event_timestamps=True)
        for i, row in enumerate(picked.iter_rows(named=True)):
            online_ts = max(served[f"{view.name}__{n}__ts"][i] for n in names)
            offline_ts = int(row["event_timestamp"].timestamp())
            streamed = online_ts > offline_ts
            results.append(
                {
                    "view": view.name,
                    JOIN_KEY: row[JOIN_KEY],
                    "matches": streamed
                    or all(served[f"{view.name}__{n}"][i] == row[n] for n in names),
                    "online_is_current": online_ts >= offline_ts,
                    "streamed": streamed,
                }
            )
    return pl.DataFrame(results)


def _sampled(feast: FeastRepo, flag: str, seed: int) -> dg.AssetCheckResult:
    """Pass when ``flag`` holds for every sampled (customer, view); failures as examples."""
    compared = online_vs_offline(feast.store(), settings.feature_snapshots_dir(), seed=seed)
    failed = compared.filter(~pl.col(flag)) if compared.height else compared
    return dg.AssetCheckResult(
        passed=failed.height == 0,
        metadata={
            "compared": compared.height,
            "failed": failed.height,
            "newer_streamed_rows": int(compared["streamed"].sum()) if compared.height else 0,
            "examples": failed.head(5).to_dicts() if failed.height else [],
        },
    )


@dg.asset_check(asset="online_features", blocking=True)
def online_matches_offline(feast: FeastRepo) -> dg.AssetCheckResult:
    """For a sample of customers, every online feature value equals the offline latest row."""
    return _sampled(feast, "matches", seed=0)


@dg.asset_check(asset="online_features", blocking=True)
def online_not_older_than_offline(feast: FeastRepo) -> dg.AssetCheckResult:
    """No sampled customer's online timestamp is older than its newest offline snapshot."""
    return _sampled(feast, "online_is_current", seed=1)
