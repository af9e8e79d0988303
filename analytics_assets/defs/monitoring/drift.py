"""Distribution drift between a reference sample and a current one: PSI and the two-sample
Kolmogorov-Smirnov statistic, per column; plain numpy/scipy, no Dagster."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

_EPSILON = 1e-4


@dataclass(frozen=True)
class Thresholds:
    psi: float = 0.2
    ks: float = 0.1


def _finite(values: pl.Series) -> np.ndarray:
    array = values.cast(pl.Float64).drop_nulls().to_numpy()
    return array[np.isfinite(array)]


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``current`` against ``reference``, over the reference's
    quantile bins (ties merged, so a feature with few distinct values gets fewer bins), with
    every share floored at 1e-4 so an empty bin costs a bounded amount."""
    if reference.size == 0 or current.size == 0:
        return float("nan")
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_counts = np.bincount(
        np.searchsorted(edges, reference, side="right"), minlength=edges.size + 1
    )
    cur_counts = np.bincount(
        np.searchsorted(edges, current, side="right"), minlength=edges.size + 1
    )
    expected = np.maximum(ref_counts / reference.size, _EPSILON)
    actual = np.maximum(cur_counts / current.size, _EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def ks(reference: np.ndarray, current: np.ndarray) -> float:
    """The largest distance between the two empirical CDFs (scipy's ``ks_2samp`` statistic)."""
    from scipy.stats import ks_2samp

    if reference.size == 0 or current.size == 0:
        return float("nan")
    return float(ks_2samp(reference, current).statistic)


def column_drift(
    reference: pl.DataFrame, current: pl.DataFrame, columns: list[str], thresholds: Thresholds
) -> pl.DataFrame:
    """One row per column: PSI, KS, means, null shares, rows compared, and ``drifted`` (PSI or
    KS above its threshold)."""
    rows = []
    for name in columns:
        ref, cur = _finite(reference[name]), _finite(current[name])
        value_psi, value_ks = psi(ref, cur), ks(ref, cur)
        rows.append(
            {
                "feature": name,
                "psi": value_psi,
                "ks": value_ks,
                "drifted": bool(value_psi > thresholds.psi or value_ks > thresholds.ks),
                "reference_mean": float(ref.mean()) if ref.size else None,
                "current_mean": float(cur.mean()) if cur.size else None,
                "reference_null_share": reference[name].null_count() / max(reference.height, 1),
                "current_null_share": current[name].null_count() / max(current.height, 1),
                "reference_rows": int(ref.size),
                "current_rows": int(cur.size),
            }
        )
    schema = {
        "feature": pl.String,
        "psi": pl.Float64,
        "ks": pl.Float64,
        "drifted": pl.Boolean,
        "reference_mean": pl.Float64,
        "current_mean": pl.Float64,
        "reference_null_share": pl.Float64,
        "current_null_share": pl.Float64,
        "reference_rows": pl.Int64,
        "current_rows": pl.Int64,
    }
    return pl.DataFrame(rows, schema=schema)


def histogram_png(reference: pl.Series, current: pl.Series, title: str) -> bytes:
    """Reference and current distributions of one column, overlaid (shares, shared bins)."""
    from analytics_assets.lib.plotting import figure, png

    ref, cur = _finite(reference), _finite(current)
    plt, fig, axes = figure(width=6.0, height=3.2)
    ax = axes[0][0]
    both = np.concatenate([ref, cur])
    low, high = np.quantile(both, [0.005, 0.995]) if both.size else (0.0, 1.0)
    edges = np.linspace(low, high if high > low else low + 1.0, 31)
    for values, label in ((ref, "training window"), (cur, "latest window")):
        if values.size:
            weights = np.full(values.size, 1.0 / values.size)
            ax.hist(
                np.clip(values, edges[0], edges[-1]),
                bins=edges,
                weights=weights,
                alpha=0.55,
                label=f"{label} (n={values.size:,})",
            )
    ax.set_title(title)
    ax.set_ylabel("share")
    ax.legend()
    return png(plt, fig)
