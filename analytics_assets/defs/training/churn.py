"""The churn classifier: time-based split and fit (no Dagster, no MLflow); how it is judged is
:mod:`analytics_assets.lib.churn_evaluation`.

The estimator is scikit-learn's ``HistGradientBoostingClassifier``: the LightGBM algorithm
(histogram-binned gradient boosting) in a library already locked (MLflow depends on it), with
native missing values (Feast returns nulls for customers without sessions), deterministic for a
fixed ``random_state``, and serialized by MLflow with skops rather than pickle. Against LightGBM
it fits as fast, to the same holdout AUC (BENCHMARKS.md, "Figures the code's choices rest on"),
so no second native dependency for nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import polars as pl

from analytics_assets.lib.churn_evaluation import LABEL, matrix
from analytics_assets.lib.days import snapshot_day

TIMESTAMP = "event_timestamp"


@dataclass(frozen=True)
class Split:
    train: pl.DataFrame
    holdout: pl.DataFrame
    train_start: datetime
    train_end: datetime
    holdout_at: datetime

    def as_of_days(self) -> list[date]:
        """The snapshot days the training rows come from."""
        return sorted({snapshot_day(t) for t in self.train[TIMESTAMP].unique().to_list()})


def time_split(frame: pl.DataFrame, label_days: int) -> Split:
    """Holdout: the newest as-of date. Train: as-of dates whose label window closed by then.

    Rows whose ``label_days`` window reaches past the holdout's as-of instant are dropped, not
    trained on: their labels describe the holdout period, so keeping them would leak it.
    """
    if frame.height == 0:
        raise ValueError("the training set is empty")
    holdout_at = frame[TIMESTAMP].max()
    cutoff = holdout_at - timedelta(days=label_days)
    holdout = frame.filter(pl.col(TIMESTAMP) == holdout_at)
    train = frame.filter(pl.col(TIMESTAMP) <= cutoff)
    if train.height == 0:
        dates = sorted({t.date().isoformat() for t in frame[TIMESTAMP].unique().to_list()})
        raise ValueError(
            f"no as-of date is {label_days} days older than the holdout ({holdout_at:%Y-%m-%d}):"
            f" the training set has {dates}. Let more history mature or lower the spacing."
        )
    if train[LABEL].n_unique() < 2:
        raise ValueError("the training rows hold a single class: nothing to learn")
    return Split(train, holdout, train[TIMESTAMP].min(), train[TIMESTAMP].max(), holdout_at)


def fit(train: pl.DataFrame, features: list[str], hyperparameters: dict[str, float | int]):
    """Fit the classifier on ``train`` with ``HistGradientBoostingClassifier``'s keyword
    ``hyperparameters``. No internal early stopping: its validation split is random across
    time, which the time-based split exists to avoid."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    x = matrix(train, features)
    # A feature no training row has (CDNOW has no sessions, so no cart abandonment) cannot be
    # split on; scikit-learn 1.9's binning fails on a column with no value at all, so give it
    # one constant value: still no split, and scoring (where it may be present) is unchanged.
    empty = [name for name in features if x[name].isna().all()]
    if empty:
        x[empty] = 0.0
    model = HistGradientBoostingClassifier(**hyperparameters, early_stopping=False)
    return model.fit(x, train[LABEL].cast(pl.Int8).to_numpy())
