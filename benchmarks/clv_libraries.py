"""The CLV fit with ``lifetimes`` (the project's) against ``pymc-marketing`` (MAP under flat
priors, i.e. the MLE): same estimates? how long per run process?

    uv run python benchmarks/clv_libraries.py --pymc-python /path/to/venv/bin/python

pymc-marketing is not in the lock (that is the decision this measures), so it runs in an
environment of your own with ``pymc-marketing`` and ``lifetimes`` installed
(``uv venv /tmp/pm && uv pip install --python /tmp/pm/bin/python pymc-marketing lifetimes``).
All 23,570 CDNOW customers, weeks 1-39 calibration, weekly RFM from ``lifetimes.utils``; each
fit in a new process, pymc-marketing ``--repeats`` times with one PyTensor compile directory,
started empty (the first fit compiles, the next ones find the cache). Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

FIT = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
t0 = time.perf_counter()
import pandas as pd
from lifetimes.utils import summary_data_from_transaction_data
path, which = sys.argv[1], sys.argv[2]
tx = pd.read_csv(path, sep=r"\s+", header=0, names=["id", "date", "qty", "amount"])
tx["date"] = pd.to_datetime(tx["date"].astype(str), format="%Y%m%d")
rfm = summary_data_from_transaction_data(
    tx, "id", "date", "amount", freq="W", observation_period_end="1997-09-30"
)
repeat = rfm[(rfm.frequency > 0) & (rfm.monetary_value > 0)]
t1 = time.perf_counter()
if which == "lifetimes":
    from lifetimes import BetaGeoFitter, GammaGammaFitter
    t2 = time.perf_counter()
    bg = BetaGeoFitter(penalizer_coef=0.0).fit(rfm["frequency"], rfm["recency"], rfm["T"])
    gg = GammaGammaFitter(penalizer_coef=0.0).fit(repeat["frequency"], repeat["monetary_value"])
    params = {**bg.params_.to_dict(), **gg.params_.to_dict()}
else:
    from pymc_extras.prior import Prior
    from pymc_marketing.clv import BetaGeoModel, GammaGammaModel
    t2 = time.perf_counter()
    data = rfm.reset_index().rename(columns={"id": "customer_id"})
    flat = lambda names: {k: Prior("HalfFlat") for k in names}
    bg = BetaGeoModel(data=data[["customer_id", "frequency", "recency", "T"]],
                      model_config=flat(("r", "alpha", "a", "b")))
    bg.fit(method="map", progressbar=False)
    rep = repeat.reset_index().rename(columns={"id": "customer_id"})
    gg = GammaGammaModel(data=rep[["customer_id", "frequency", "monetary_value"]],
                         model_config=flat(("p", "q", "v")))
    gg.fit(method="map", progressbar=False)
    params = {k: bg.idata.posterior[k].values.ravel()[0] for k in ("r", "alpha", "a", "b")}
    params.update({k: gg.idata.posterior[k].values.ravel()[0] for k in ("p", "q", "v")})
t3 = time.perf_counter()
print(json.dumps({"customers": len(rfm), "import_s": round(t2 - t1, 3),
                  "fit_s": round(t3 - t2, 3),
                  "params": {k: round(float(v), 4) for k, v in params.items()}}))
"""


def fit(python: str, which: str, env: dict[str, str]) -> dict:
    import importlib.util

    data = Path(importlib.util.find_spec("lifetimes").origin).parent / "datasets"
    done = subprocess.run(
        [python, "-c", FIT, str(data / "CDNOW_master.txt"), which],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pymc-python", required=True, help="a Python with pymc-marketing")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ours = fit(sys.executable, "lifetimes", dict(os.environ))
    print(f"lifetimes: {ours}", flush=True)
    with tempfile.TemporaryDirectory() as compiledir:
        env = {**os.environ, "PYTENSOR_FLAGS": f"compiledir={compiledir}"}
        theirs = []
        for n in range(args.repeats):
            theirs.append(fit(args.pymc_python, "pymc", env))
            print(f"pymc-marketing #{n + 1}: {theirs[-1]}", flush=True)
    steady = theirs[1:] or theirs
    summary = {
        "lifetimes_fit_s": ours["fit_s"],
        "pymc_cold_fit_s": theirs[0]["fit_s"],
        "pymc_warm_fit_s": min(t["fit_s"] for t in steady),
        "pymc_import_s": min(t["import_s"] for t in steady),
        "max_param_diff": max(
            abs(ours["params"][k] - theirs[-1]["params"][k]) for k in ours["params"]
        ),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
