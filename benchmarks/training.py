"""Training benchmark: the churn model on 1M customer-days, and BG/NBD + Gamma-Gamma on all
23,570 CDNOW customers, through the real assets (``churn_model``, ``clv_model``) with MLflow.

- churn: a synthetic training set of 125,000 customers x 12 as-of dates (28 days apart); the
  time split trains on the 8 oldest (1,000,000 customer-days) and scores the newest. The asset
  runs 3 times in one MLflow store; its ``fit_seconds`` and ``mlflow_seconds`` (params, metrics,
  plots, model log with signature, digest, registration) are medians over the runs after the
  first, which also creates the MLflow database.
- CLV: the CDNOW master log replayed through ingest -> sessions/customer_daily ->
  customer_features (as of 1997-09-30), then ``clv_model``; the maximum-likelihood fit itself is
  timed 5 times on the same summary.

Run: ``uv run python benchmarks/training.py`` (``--quick``: 100k customer-days, CDNOW sample).
Last line: JSON with ``churn_fit_s``, ``clv_fit_s``, ``mlflow_share``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CALIBRATION_END = date(1997, 9, 30)
LAST_DAY = date(1998, 6, 30)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_churn(customers: int, runs: int) -> dict:
    import dagster as dg

    from analytics_assets import settings
    from analytics_assets.defs.features.assets import feast_definitions
    from analytics_assets.defs.training.assets import churn_model
    from analytics_assets.resources import build_resources
    from analytics_assets.testing.training_set import synthetic_training_set

    frame = synthetic_training_set(customers=customers, as_of_days=12, seed=1)
    path = settings.training_set_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)
    resources = build_resources()
    fits, logs, aucs = [], [], []
    with dg.DagsterInstance.ephemeral() as instance:
        assert dg.materialize(
            [feast_definitions], resources={"feast": resources["feast"]}, instance=instance
        ).success
        for n in range(runs):
            result = dg.materialize(
                [churn_model],
                resources={k: resources[k] for k in ("feast", "mlflow")},
                instance=instance,
            )
            meta = result.asset_materializations_for_node("churn_model")[0].metadata
            fits.append(meta["fit_seconds"].value)
            logs.append(meta["mlflow_seconds"].value)
            aucs.append(meta["roc_auc"].value)
            print(
                f"churn run {n + 1}: fit {fits[-1]:.2f} s on {meta['train_rows'].value:,} rows, "
                f"MLflow {logs[-1]:.2f} s, holdout AUC {aucs[-1]:.4f}"
            )
    warm_fits, warm_logs = fits[1:] or fits, logs[1:] or logs
    return {
        "churn_rows": meta["train_rows"].value,
        "churn_fit_s": round(statistics.median(warm_fits), 3),
        "churn_fit_runs_s": [round(f, 3) for f in fits],
        "mlflow_s": round(statistics.median(warm_logs), 3),
        "mlflow_first_run_s": round(logs[0], 3),
        "mlflow_share": round(statistics.median(warm_logs) / statistics.median(warm_fits), 4),
        "churn_auc": round(aucs[0], 4),
    }


def bench_clv(dataset: str, repeats: int) -> dict:
    import dagster as dg
    import polars as pl

    from analytics_assets import settings
    from analytics_assets.defs.analytics.assets import customer_daily, sessions
    from analytics_assets.defs.features.assets import customer_features
    from analytics_assets.defs.ingest.batch import ingest_file
    from analytics_assets.defs.training import clv
    from analytics_assets.defs.training.assets import clv_model
    from analytics_assets.lib import lakehouse, snapshots
    from analytics_assets.producers import cdnow
    from analytics_assets.producers.files import write_batch
    from analytics_assets.resources import build_resources

    resources = build_resources()
    transactions = cdnow.read_transactions(cdnow.dataset_path(dataset))
    path = write_batch(cdnow.to_events(transactions), settings.landing_dir(), "cdnow", "jsonl")
    started = time.perf_counter()
    with lakehouse.connect() as conn:
        ingest_file(conn, path, "cdnow")
    tags = {
        "dagster/asset_partition_range_start": date(1997, 1, 1).isoformat(),
        "dagster/asset_partition_range_end": LAST_DAY.isoformat(),
    }
    with dg.DagsterInstance.ephemeral() as instance:
        warehouse = {"warehouse": resources["warehouse"]}
        assert dg.materialize(
            [sessions, customer_daily], resources=warehouse, instance=instance, tags=tags
        ).success
        assert dg.materialize(
            [customer_features],
            partition_key=CALIBRATION_END.isoformat(),
            resources=warehouse,
            instance=instance,
        ).success
        print(f"CDNOW {dataset}: replayed to features in {time.perf_counter() - started:.1f} s")
        result = dg.materialize(
            [clv_model],
            resources={k: resources[k] for k in ("warehouse", "mlflow")},
            instance=instance,
        )
    meta = result.asset_materializations_for_node("clv_model")[0].metadata
    rfm = clv.summary(
        pl.read_parquet(snapshots.file_for(settings.feature_snapshots_dir(), CALIBRATION_END))
    )
    fits = []
    for _ in range(repeats):
        started = time.perf_counter()
        fitted = clv.fit(rfm)
        fits.append(time.perf_counter() - started)
    p = fitted.params
    print(
        f"CLV fit on {rfm.height:,} customers: median {statistics.median(fits):.3f} s "
        f"(runs {', '.join(f'{f:.3f}' for f in fits)}); asset fit {meta['fit_seconds'].value} s,"
        f" MLflow {meta['mlflow_seconds'].value} s"
    )
    print(
        f"  BG/NBD r {p.r:.4f} alpha {p.alpha:.4f} a {p.a:.4f} b {p.b:.4f}; "
        f"Gamma-Gamma p {p.p:.3f} q {p.q:.3f} v {p.v:.3f}"
    )
    print(
        f"  weeks 40-78: predicted {meta['predicted_purchases'].value:,.0f} vs actual "
        f"{meta['actual_purchases'].value:,.0f} repeat purchase days"
    )
    return {
        "clv_customers": rfm.height,
        "clv_fit_s": round(statistics.median(fits), 3),
        "clv_params": {k: round(v, 4) for k, v in p.__dict__.items()},
        "clv_predicted_holdout": round(meta["predicted_purchases"].value, 1),
        "clv_actual_holdout": meta["actual_purchases"].value,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100k customer-days, CDNOW sample")
    args = parser.parse_args()
    customers = 12_500 if args.quick else 125_000
    with tempfile.TemporaryDirectory() as home:
        os.environ["ANALYTICS_HOME"] = home
        for name in ("MLFLOW_TRACKING_URI", "ANALYTICS_FEATURES_DIR", "ANALYTICS_WAREHOUSE"):
            os.environ.pop(name, None)
        from analytics_assets import settings

        settings.ensure_dirs()
        os.environ.update(settings.feast_environment())
        figures = bench_churn(customers, runs=2 if args.quick else 3)
        os.environ.pop("MLFLOW_TRACKING_URI", None)  # set by mlflow.set_tracking_uri
        from analytics_assets.producers import cdnow

        figures.update(bench_clv(cdnow.SAMPLE if args.quick else cdnow.MASTER, repeats=5))
    print(
        f"churn: {figures['churn_rows']:,} customer-days fitted in {figures['churn_fit_s']} s "
        f"(goal <= 60 s); MLflow logging {figures['mlflow_s']} s = "
        f"{figures['mlflow_share']:.1%} of it (goal <= 5%; first run "
        f"{figures['mlflow_first_run_s']} s with database creation)"
    )
    print(f"CLV: {figures['clv_customers']:,} customers in {figures['clv_fit_s']} s (goal <= 2 s)")
    print(
        json.dumps(
            {
                "bench": "training",
                **{k: v for k, v in figures.items() if k != "clv_params"},
                "peak_rss_mib": round(peak_rss_mib()),
            }
        )
    )


if __name__ == "__main__":
    main()
