"""CDNOW (23,570 customers), weeks 1-39 calibration: lifetimes MLE vs pymc-marketing MAP (flat
priors). One fit per process; run twice with the same PYTENSOR compiledir for steady state."""
import sys, time, json
import warnings
warnings.filterwarnings("ignore")
import pandas as pd
from lifetimes.utils import summary_data_from_transaction_data

path = sys.argv[1]
which = sys.argv[2]
tx = pd.read_csv(path, sep=r"\s+", header=0, names=["id", "date", "qty", "amount"])
tx["date"] = pd.to_datetime(tx["date"].astype(str), format="%Y%m%d")
rfm = summary_data_from_transaction_data(tx, "id", "date", "amount", freq="W",
                                         observation_period_end="1997-09-30")
out = {"customers": len(rfm)}
t0 = time.perf_counter()
if which == "lifetimes":
    from lifetimes import BetaGeoFitter, GammaGammaFitter
    t1 = time.perf_counter()
    bg = BetaGeoFitter(penalizer_coef=0.0).fit(rfm["frequency"], rfm["recency"], rfm["T"])
    rep = rfm[(rfm.frequency > 0) & (rfm.monetary_value > 0)]
    gg = GammaGammaFitter(penalizer_coef=0.0).fit(rep["frequency"], rep["monetary_value"])
    out.update({k: round(float(v), 4) for k, v in {**bg.params_.to_dict(), **gg.params_.to_dict()}.items()})
else:
    from pymc_marketing.clv import BetaGeoModel, GammaGammaModel
    from pymc_extras.prior import Prior
    t1 = time.perf_counter()
    data = rfm.reset_index().rename(columns={"id": "customer_id", "T": "T"})
    flat = {k: Prior("HalfFlat") for k in ("r", "alpha", "a", "b")}
    bg = BetaGeoModel(data=data[["customer_id", "frequency", "recency", "T"]], model_config=flat)
    bg.fit(method="map", progressbar=False)
    rep = data[(data.frequency > 0) & (data.monetary_value > 0)]
    gg = GammaGammaModel(data=rep[["customer_id", "frequency", "monetary_value"]],
                         model_config={k: Prior("HalfFlat") for k in ("p", "q", "v")})
    gg.fit(method="map", progressbar=False)
    post = {**{k: float(bg.idata.posterior[k].values.ravel()[0]) for k in ("r", "alpha", "a", "b")},
            **{k: float(gg.idata.posterior[k].values.ravel()[0]) for k in ("p", "q", "v")}}
    out.update({k: round(v, 4) for k, v in post.items()})
t2 = time.perf_counter()
out.update(which=which, import_s=round(t1 - t0, 2), fit_s=round(t2 - t1, 2))
print(json.dumps(out))
