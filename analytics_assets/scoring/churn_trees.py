"""The churn classifier's fast scorer: its trees converted by treelite and evaluated by treelite's
GTIL (a C++ tree evaluator, no compiler needed where it serves), equal to scikit-learn's
``predict_proba`` to :data:`TOLERANCE`.

Why: scikit-learn's ``HistGradientBoostingClassifier`` pays about 5 us per tree per call, so one
customer costs a 200-tree model about 1 ms, most of the scoring service's time per request; GTIL
scores the same row in about 30 us (``BENCHMARKS.md``, serving). ONNX (float32 thresholds)
differs in the 7th digit and a compiled model needs a compiler at serving time: neither.

A conversion is trusted only after it agreed with scikit-learn on the rows it will meet: the
holdout, the holdout with each feature missing in turn, and rows sitting exactly on (and just
above) every split threshold of every tree, where a ``<`` for ``<=`` or a wrong missing-value
branch would show. The promotion writes the converted model beside the MLflow folder with its
own sha256 (:func:`build`); a conversion that disagrees blocks the promotion, one that is
impossible leaves the service on scikit-learn (and ``/reload`` says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

TOLERANCE = 1e-9
"""Largest absolute difference allowed between the two scorers' churn probabilities."""
FOLDER = "fast_scorer"
"""Where a BentoML model of ours keeps the converted trees (beside the MLflow folder)."""
FILE = "churn.treelite"
BATCH_ROWS = 200
"""From about 100 rows per call on, scikit-learn is as fast as GTIL and then faster (GTIL costs
about 13 us per row, scikit-learn about 0.85 ms per call plus 5 us per row: 1.3 ms each for
100 rows, 13.4 against 6.2 ms for 1,000), so the service gives batches of this many rows or
more to scikit-learn; the outputs are the same (the agreement check)."""
MAX_PROBE_ROWS = 20_000
"""Holdout rows the agreement is checked on (a sample when the holdout is larger)."""


class Unconvertible(ValueError):
    """treelite cannot represent this model (the service scores it with scikit-learn)."""


class Disagrees(ValueError):
    """The converted model's probabilities differ from scikit-learn's beyond the tolerance."""


@dataclass(frozen=True)
class Agreement:
    max_abs_diff: float
    rows: int

    @property
    def agrees(self) -> bool:
        return bool(self.max_abs_diff <= TOLERANCE)

    def detail(self) -> str:
        return (
            f"treelite GTIL vs scikit-learn: largest difference {self.max_abs_diff:.3g} on "
            f"{self.rows:,} rows (holdout, missing values, split thresholds; bound {TOLERANCE:g})"
        )


def engine() -> str:
    import treelite

    return f"treelite {treelite.__version__} GTIL"


def convert(model) -> bytes:
    """The classifier's trees in treelite's serialized form; :class:`Unconvertible` if not."""
    import treelite.sklearn

    try:
        return bytes(treelite.sklearn.import_model(model).serialize_bytes())
    except Exception as error:  # unsupported estimator, categorical splits, ...
        raise Unconvertible(f"treelite cannot convert {type(model).__name__}: {error}") from error


class TreeScorer:
    """Churn probabilities from a converted model, one GTIL thread per call (a request scores
    few rows; the server's other threads need the other core)."""

    def __init__(self, data: bytes) -> None:
        import treelite

        self._model = treelite.Model.deserialize_bytes(data)
        import treelite.gtil

        self._predict = treelite.gtil.predict
        self.num_feature = self._model.num_feature

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        if matrix.shape[1] != self.num_feature:
            raise ValueError(f"{matrix.shape[1]} features given, the trees take {self.num_feature}")
        out = self._predict(self._model, np.ascontiguousarray(matrix, dtype=np.float64), nthread=1)
        return out.reshape(matrix.shape[0])


def inputs(frame, model) -> np.ndarray:
    """A feature frame (polars) as the float matrix the model takes, in its feature order."""
    from analytics_assets.lib.churn_evaluation import matrix

    names = [str(name) for name in model.feature_names_in_]
    return matrix(frame, names).to_numpy(dtype=np.float64)


def probe_rows(model, x: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Rows to compare the scorers on: ``x`` (sampled to :data:`MAX_PROBE_ROWS`), ``x`` with
    each feature missing in turn, an all-missing row, and for every split of every tree a row
    at its threshold and one just above it."""
    n_features = int(model.n_features_in_)
    rng = np.random.default_rng(seed)
    parts = []
    if x is not None and len(x):
        x = np.asarray(x, dtype=np.float64)
        if len(x) > MAX_PROBE_ROWS:
            x = x[rng.choice(len(x), MAX_PROBE_ROWS, replace=False)]
        parts.append(x)
        sample = x[rng.choice(len(x), min(len(x), 200), replace=False)]
        for j in range(n_features):
            missing = sample.copy()
            missing[:, j] = np.nan
            parts.append(missing)
    parts.append(np.full((1, n_features), np.nan))
    splits = [
        (int(node["feature_idx"]), float(node["num_threshold"]))
        for predictors in model._predictors
        for predictor in predictors
        for node in predictor.nodes
        if not node["is_leaf"]
    ]
    if splits:
        base = parts[0][0] if x is not None and len(x) else np.zeros(n_features)
        on = np.tile(base, (len(splits), 1))
        features = np.array([f for f, _ in splits])
        thresholds = np.array([t for _, t in splits])
        on[np.arange(len(splits)), features] = thresholds
        above = on.copy()
        above[np.arange(len(splits)), features] = np.nextafter(thresholds, np.inf)
        parts += [on, above]
    return np.vstack(parts)


def agreement(model, scorer: TreeScorer, rows: np.ndarray) -> Agreement:
    import warnings

    with warnings.catch_warnings():  # fitted on a frame, given a matrix: same column order
        warnings.filterwarnings("ignore", "X does not have valid feature names", UserWarning)
        expected = model.predict_proba(rows)[:, 1]
    actual = scorer(rows)
    diff = np.abs(actual - expected)
    nan_mismatch = np.isnan(actual) != np.isnan(expected)
    worst = float("inf") if nan_mismatch.any() else float(np.nanmax(diff, initial=0.0))
    return Agreement(worst, len(rows))


def check(model, holdout=None) -> tuple[bytes, Agreement]:
    """Convert ``model`` and compare it with scikit-learn on :func:`probe_rows` of the
    ``holdout`` (a polars frame of its features; ``None`` or other features: the probes
    alone). Returns the converted model and the agreement; :class:`Unconvertible` if none."""
    data = convert(model)
    x = None
    if holdout is not None:
        try:
            x = inputs(holdout, model)
        except ValueError:  # a holdout of other features (an old version's)
            x = None
    return data, agreement(model, TreeScorer(data), probe_rows(model, x))


def build(model, holdout, destination: Path) -> Agreement:
    """:func:`check`, then write the converted model to ``destination/FILE``. Raises
    :class:`Unconvertible`, or :class:`Disagrees` (nothing written)."""
    data, found = check(model, holdout)
    if not found.agrees:
        raise Disagrees(found.detail())
    destination.mkdir(parents=True, exist_ok=True)
    (destination / FILE).write_bytes(data)
    return found


def load(folder: Path) -> TreeScorer:
    return TreeScorer((Path(folder) / FILE).read_bytes())
