"""Drift statistics, training windows and the prediction log reader, without Dagster."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl

from analytics_assets.defs.monitoring import drift, predictions, windows
from analytics_assets.lib import churn_evaluation, model_registry
from analytics_assets.lib.alerts import read, record


def test_psi_and_ks_separate_shift_from_noise() -> None:
    rng = np.random.default_rng(1)
    reference, same, shifted = (
        rng.normal(size=20_000),
        rng.normal(size=20_000),
        rng.normal(0.5, 1, 20_000),
    )
    assert drift.psi(reference, same) < 0.02 and drift.ks(reference, same) < 0.03
    assert drift.psi(reference, shifted) > 0.2 and drift.ks(reference, shifted) > 0.15


def test_psi_on_a_discrete_feature_uses_its_values_as_bins() -> None:
    zeros_ones = np.r_[np.zeros(800), np.ones(200)]
    assert drift.psi(zeros_ones, zeros_ones) == 0.0
    half = np.r_[np.zeros(500), np.ones(500)]
    # (0.5-0.8) ln(0.5/0.8) + (0.5-0.2) ln(0.5/0.2)
    assert abs(drift.psi(zeros_ones, half) - (0.3 * np.log(1.6) + 0.3 * np.log(2.5))) < 1e-9


def test_column_drift_flags_by_either_threshold_and_reports_nulls() -> None:
    rng = np.random.default_rng(2)
    reference = pl.DataFrame({"a": rng.normal(size=5000), "b": rng.normal(size=5000)})
    current = pl.DataFrame(
        {
            "a": rng.normal(size=5000),
            "b": pl.Series([None if u < 0.5 else 3.0 for u in rng.random(5000)], dtype=pl.Float64),
        }
    )
    table = drift.column_drift(reference, current, ["a", "b"], drift.Thresholds(0.2, 0.1))
    rows = {r["feature"]: r for r in table.iter_rows(named=True)}
    assert not rows["a"]["drifted"] and rows["b"]["drifted"]
    assert rows["b"]["current_null_share"] > 0.4 and rows["b"]["current_rows"] < 3000
    png = drift.histogram_png(reference["b"], current["b"], "b")
    assert png.startswith(b"\x89PNG")


def test_training_days_are_the_versions_recorded_as_of_days() -> None:
    """Drift compares with the days a version's tag names, whatever their spacing; days whose
    snapshot file is gone drop out."""
    available = [date(2024, 1, 1) + timedelta(days=n) for n in range(40)]
    days = [date(2024, 1, 2), date(2024, 1, 16), date(2024, 1, 30), date(2024, 3, 1)]
    tags = {model_registry.AS_OF_DAYS_TAG: model_registry.as_of_days_tag(days)}
    assert windows.training_days(tags, available) == days[:3]
    assert windows.training_days({"as_of_days": "2024-02-01"}, available) == [date(2024, 2, 1)]
    assert windows.training_days({"as_of_days": "2030-01-01"}, available) == []
    assert windows.training_days({}, available) == []


def test_churn_split_reports_its_as_of_days() -> None:
    """What the churn model's version is tagged with: the snapshot days of its training rows."""
    from analytics_assets.defs.training import churn
    from analytics_assets.lib.days import snapshot_instant

    grid = [date(2024, 1, 1) + timedelta(days=14 * n) for n in range(12)]
    frame = pl.DataFrame(
        {
            churn.TIMESTAMP: [snapshot_instant(d) for d in grid for _ in range(2)],
            churn_evaluation.LABEL: [True, False] * len(grid),
        }
    )
    split = churn.time_split(frame, 90)
    assert split.as_of_days() == [d for d in grid if snapshot_instant(d) <= split.train_end]
    assert split.as_of_days()[-1] == date(2024, 2, 26)


def _log(root, model, day, version, values, role="champion", known=True) -> None:
    folder = root / model / f"date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    n = len(values)
    pl.DataFrame(
        {
            "logged_at": [datetime.fromisoformat(day).replace(tzinfo=UTC)] * n,
            "model": [model] * n,
            "model_version": [version] * n,
            "role": [role] * n,
            "served": [True] * n,
            "known": [known] * n,
            "churn_probability": values,
        }
    ).write_parquet(folder / f"{role}-{version}-{len(list(folder.iterdir()))}.parquet")


def test_served_predictions_keep_the_champion_versions_answers(tmp_path) -> None:
    _log(tmp_path, "churn_model", "2024-03-01", "3", [0.1, 0.2])
    _log(tmp_path, "churn_model", "2024-03-02", "3", [0.3])
    _log(tmp_path, "churn_model", "2024-03-02", "2", [0.9])  # an older champion
    _log(tmp_path, "churn_model", "2024-03-02", "3", [0.8], role="challenger")
    _log(tmp_path, "churn_model", "2024-03-02", "3", [0.7], known=False)
    frame = predictions.served_predictions(tmp_path, "churn_model", "3", ["churn_probability"])
    baseline, latest, day = predictions.latest_against_earlier(frame)
    assert day == "2024-03-02"
    assert sorted(baseline["churn_probability"]) == [0.1, 0.2]
    assert latest["churn_probability"].to_list() == [0.3]
    empty = predictions.served_predictions(tmp_path, "clv_model", "1", ["probability_alive"])
    assert empty.is_empty()


def test_failures_are_recorded_once_per_run(tmp_path) -> None:
    path = tmp_path / "alerts" / "failures.jsonl"
    record(path, {"run_id": "r1", "message": "boom"})
    record(path, {"run_id": "r1", "message": "boom"})
    record(path, {"run_id": "r2", "message": "bang"})
    assert [f["run_id"] for f in read(path)] == ["r1", "r2"]
