"""BG/NBD + Gamma-Gamma customer value: the maximum-likelihood fit and the predictions.

The one module that imports ``lifetimes`` (archived upstream; why it stays is in
``pyproject.toml``): training fits through :func:`fit_params`, the scoring service predicts
through :func:`predict`, and ``tests/training/test_cdnow_clv.py`` pins the fit to the BG/NBD
paper's published estimates, so a replacement shows at once.

Time is measured in periods of ``period_days`` days (weeks by default, as in Fader, Hardie and
Lee, 2005); inputs are the feature store's day-based columns.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

INPUTS = ["frequency", "recency_days", "tenure_days", "monetary_value"]
OUTPUTS = ["expected_purchases", "probability_alive", "expected_average_spend", "expected_revenue"]


@dataclass(frozen=True)
class CustomerValueParams:
    r: float
    alpha: float
    a: float
    b: float
    p: float
    q: float
    v: float
    period_days: float = 7.0

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> CustomerValueParams:
        return cls(**json.loads(Path(path).read_text()))


def _fitters(params: CustomerValueParams):
    import pandas as pd
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    purchases, spend = BetaGeoFitter(), GammaGammaFitter()
    purchases.params_ = pd.Series(
        {"r": params.r, "alpha": params.alpha, "a": params.a, "b": params.b}
    )
    spend.params_ = pd.Series({"p": params.p, "q": params.q, "v": params.v})
    return purchases, spend


def fit_params(
    frequency: np.ndarray,
    recency: np.ndarray,
    tenure: np.ndarray,
    repeat_frequency: np.ndarray,
    repeat_monetary: np.ndarray,
    period_days: float,
) -> CustomerValueParams:
    """Maximum likelihood (no penalty): BG/NBD on ``frequency``, ``recency`` and ``tenure``
    (in periods), Gamma-Gamma on the repeat customers' frequency and mean spend."""
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    purchases = BetaGeoFitter(penalizer_coef=0.0).fit(frequency, recency, tenure)
    spend = GammaGammaFitter(penalizer_coef=0.0).fit(repeat_frequency, repeat_monetary)
    bg, gg = purchases.params_, spend.params_
    return CustomerValueParams(
        r=float(bg["r"]),
        alpha=float(bg["alpha"]),
        a=float(bg["a"]),
        b=float(bg["b"]),
        p=float(gg["p"]),
        q=float(gg["q"]),
        v=float(gg["v"]),
        period_days=period_days,
    )


def predict(params: CustomerValueParams, columns: dict[str, np.ndarray], horizon_days: float):
    """Per customer: expected purchases in the next ``horizon_days``, probability alive, expected
    spend per purchase, and expected revenue (the two multiplied, undiscounted).

    ``columns`` holds :data:`INPUTS` (days, as the feature store keeps them). A customer with no
    first purchase yet (null tenure) gets NaN: the model does not describe them.
    """
    purchases, spend = _fitters(params)
    frequency = np.asarray(columns["frequency"], dtype=float)
    recency = np.asarray(columns["recency_days"], dtype=float) / params.period_days
    tenure = np.asarray(columns["tenure_days"], dtype=float) / params.period_days
    monetary = np.asarray(columns["monetary_value"], dtype=float)
    horizon = float(horizon_days) / params.period_days
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.asarray(
            purchases.conditional_expected_number_of_purchases_up_to_time(
                horizon, frequency, recency, tenure
            ),
            dtype=float,
        )
        alive = np.asarray(
            purchases.conditional_probability_alive(frequency, recency, tenure), dtype=float
        )
        average = np.asarray(
            spend.conditional_expected_average_profit(frequency, np.nan_to_num(monetary)),
            dtype=float,
        )
    average = np.where(np.isnan(frequency), np.nan, average)
    return {
        "expected_purchases": expected,
        "probability_alive": alive,
        "expected_average_spend": average,
        "expected_revenue": expected * average,
    }
