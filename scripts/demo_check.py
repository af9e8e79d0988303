"""Checks a running platform from the outside, stage by stage: Dagster's GraphQL API (runs
succeeded, assets materialized), the lakehouse (tables non-empty), Feast's online store
(features present) and the scoring service (it answers).

Usage: ``uv run python scripts/demo_check.py [--dagster http://127.0.0.1:3000]
[--scoring http://127.0.0.1:3001]`` (``make demo-check``); exits 1 if a stage fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from collections import Counter
from dataclasses import dataclass

ASSETS = (
    "events",
    "sessions",
    "customer_daily",
    "customer_base_audit",
    "customer_features",
    "feast_definitions",
    "online_features",
    "training_set",
    "churn_model",
    "clv_model",
    "model_evaluation",
    "promoted_models",
    "drift_report",
    "model_performance",
)
TABLES = ("events", "sessions", "customer_daily", "kpis_daily", "audit_summary")
_RUNS = """
{ runsOrError(limit: 1000) { ... on Runs { results { runId jobName status tags { key value } } } } }
"""
_ASSETS = """
{ assetsOrError { ... on AssetConnection { nodes { key { path }
  assetMaterializations(limit: 1) { timestamp } } } } }
"""


def post_json(url: str, payload: dict, timeout: float = 30.0) -> dict:
    request = urllib.request.Request(
        url, json.dumps(payload).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def graphql(dagster: str, query: str) -> dict:
    answer = post_json(f"{dagster}/graphql", {"query": query})
    if answer.get("errors"):
        raise RuntimeError(answer["errors"])
    return answer["data"]


def runs(dagster: str) -> list[dict]:
    return graphql(dagster, _RUNS)["runsOrError"]["results"]


def materialized(dagster: str) -> dict[str, float]:
    """Asset key -> time of its latest materialization (ms), for assets materialized once."""
    nodes = graphql(dagster, _ASSETS)["assetsOrError"]["nodes"]
    return {
        "/".join(n["key"]["path"]): float(n["assetMaterializations"][0]["timestamp"])
        for n in nodes
        if n["assetMaterializations"]
    }


def asset_groups(dagster: str) -> list[str]:
    """The code location's asset groups."""
    nodes = graphql(dagster, "{ assetNodes { groupName } }")["assetNodes"]
    return sorted({n["groupName"] for n in nodes if n["groupName"]})


def tag_of(run: dict, key: str) -> str | None:
    return next((t["value"] for t in run["tags"] if t["key"] == key), None)


def sensor_of(run: dict) -> str | None:
    return tag_of(run, "dagster/sensor_name")


RETRYING = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED")


@dataclass(frozen=True)
class Outcome:
    """A run and its retries read as one: the first run, and the last retry (or itself)."""

    first: dict
    last: dict
    max_retries: int = 0

    @property
    def status(self) -> str:
        """``HEALED`` (failed, then a retry succeeded), ``RETRYING`` (failed, and its retry is
        not done, or not made yet while retries are left), else the last run's status."""
        last = self.last["status"]
        if last == "FAILURE" and int(tag_of(self.last, "dagster/retry_number") or 0) < (
            self.max_retries
        ):
            return "RETRYING"  # the daemon retries a failed run within seconds
        if self.first["status"] != "FAILURE" or self.first is self.last:
            return last
        if last == "SUCCESS":
            return "HEALED"
        return "RETRYING" if last in RETRYING else last

    def describe(self) -> str:
        text = f"{self.first['jobName']} {self.first['runId'][:8]}"
        if self.last is not self.first:
            text += f" (retry {self.last['runId'][:8]}: {self.last['status'].lower()})"
        return text


def max_retries() -> int:
    """Dagster's ``run_retries.max_retries`` in ``$DAGSTER_HOME/dagster.yaml`` (0: off)."""
    import yaml

    from analytics_assets import settings

    path = settings.dagster_home() / "dagster.yaml"
    config = (yaml.safe_load(path.read_text()) if path.exists() else None) or {}
    retries = config.get("run_retries") or {}
    return int(retries.get("max_retries", 0)) if retries.get("enabled") else 0


def outcomes(found: list[dict], retries: int | None = None) -> list[Outcome]:
    """Dagster's retries (``dagster/root_run_id``, ``dagster/retry_number``) joined to the run
    they retry: one outcome per run a sensor, schedule or person asked for, newest first.
    ``retries``: how often Dagster retries a failed run (default: as the instance says)."""
    retries = max_retries() if retries is None else retries
    families: dict[str, list[dict]] = {}
    for run in found:
        families.setdefault(tag_of(run, "dagster/root_run_id") or run["runId"], []).append(run)
    result = []
    for root, family in families.items():
        family.sort(key=lambda r: int(tag_of(r, "dagster/retry_number") or 0))
        first = next((r for r in family if r["runId"] == root), family[0])
        result.append(Outcome(first, family[-1], retries))
    return result


def check_runs(dagster: str) -> str:
    return runs_verdict(runs(dagster))


def runs_verdict(found: list[dict], retries: int | None = None) -> str:
    """What the runs say: an AssertionError for a run that failed for good (after Dagster's
    retries), or a line naming the runs that failed and were healed by a retry."""
    every = outcomes(found, retries)
    failed = [o.describe() for o in every if o.status == "FAILURE"]
    if failed:
        raise AssertionError(f"failed runs: {failed}")
    healed = [o.describe() for o in every if o.status in ("HEALED", "RETRYING")]
    unfinished = [r for r in found if r["status"] not in ("SUCCESS", "CANCELED", "FAILURE")]
    by_job = Counter(r["jobName"] for r in found)
    if not any(r["jobName"] == "retrain_models" for r in found):
        raise AssertionError("no retrain_models run yet")
    retried = f"; failed, then retried by Dagster: {healed}" if healed else ""
    return (
        f"{len(found)} runs, none failed for good ({len(unfinished)} in flight): "
        f"{dict(by_job)}{retried}"
    )


def check_assets(dagster: str) -> str:
    missing = [a for a in ASSETS if a not in materialized(dagster)]
    if missing:
        raise AssertionError(f"never materialized: {missing}")
    return f"all {len(ASSETS)} assets of the loop materialized"


def check_tables() -> str:
    from analytics_assets.lib import lakehouse

    # readers attach the lakehouse read-only: no lock to wait for while runs write
    with lakehouse.connect(read_only=True) as conn:
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
    empty = [t for t, n in counts.items() if not n]
    if empty:
        raise AssertionError(f"empty tables: {empty}")
    return ", ".join(f"{t} {n:,}" for t, n in counts.items())


def sample_customer() -> str:
    """A customer of the newest feature snapshot who has purchased."""
    import polars as pl

    from analytics_assets import settings
    from analytics_assets.lib import snapshots
    from analytics_assets.lib.snapshots import file_for

    directory = settings.feature_snapshots_dir()
    newest = snapshots.snapshot_days(directory)[-1]
    frame = pl.read_parquet(file_for(directory, newest), columns=["customer_id", "frequency"])
    return frame.filter(pl.col("frequency") > 0).sort("customer_id")["customer_id"][0]


def check_online(customer: str) -> str:
    from analytics_assets import settings
    from analytics_assets.lib import feast_repo
    from analytics_assets.lib.names import CHURN_FEATURES

    store = feast_repo.open_store(settings.feature_repo_path())
    refs = feast_repo.feature_refs(store, [CHURN_FEATURES])
    values = store.get_online_features(
        features=refs, entity_rows=[{"customer_id": customer}]
    ).to_dict()
    present = [r for r in refs if values[r.split(":", 1)[1]][0] is not None]
    if not present:
        raise AssertionError(f"no online features for {customer}")
    return f"{customer}: {len(present)} of {len(refs)} churn_v1 features online"


def check_scoring(scoring: str, customer: str) -> str:
    churn = post_json(f"{scoring}/churn", {"customer_ids": [customer]})
    clv = post_json(f"{scoring}/clv", {"customer_ids": [customer], "horizon_days": 365})
    (answer,), (value,) = churn["predictions"], clv["predictions"]
    if not answer["known"] or not 0 <= answer["churn_probability"] <= 1:
        raise AssertionError(f"/churn answered {answer}")
    return (
        f"/churn {customer}: {answer['churn_probability']:.3f} (model version "
        f"{answer['model_version']}); /clv 365 days: {value['expected_revenue']:.2f}"
    )


DOCS_WITH_EXAMPLES = ("README.md", "docs/serving.md", "docs/lake.md")


def doc_examples() -> list[tuple[str, str, dict]]:
    """``(doc, endpoint, body)`` of every ``curl -s localhost:PORT/ENDPOINT -d '{...}'`` the
    docs show for ``/churn``, ``/clv`` and ``/customer``."""
    import re

    from analytics_assets import settings

    found = []
    for doc in DOCS_WITH_EXAMPLES:
        text = (settings.REPO_ROOT / doc).read_text()
        for endpoint, body in re.findall(
            r"curl -s localhost:\d+/(churn|clv|customer)\s+-d '(\{.*?\})'", text
        ):
            found.append((doc, endpoint, json.loads(body)))
    return found


def check_doc_examples(scoring: str, reader: str | None) -> str:
    """The docs' curl examples answer for a customer the demo holds (known, or a profile)."""
    answered = 0
    for doc, endpoint, body in doc_examples():
        if endpoint == "customer":
            if reader is not None:
                post_json(f"{reader}/customer", body)  # an unknown customer is an HTTP 404
                answered += 1
            continue
        predictions = post_json(f"{scoring}/{endpoint}", body)["predictions"]
        if not any(p["known"] for p in predictions):
            raise AssertionError(f"{doc}: /{endpoint} {body} knows none of them")
        answered += 1
    return f"{answered} examples of {', '.join(DOCS_WITH_EXAMPLES)} answer for known customers"


def check_reader(reader: str) -> str:
    """The read API answers from the lakehouse: the last week of daily KPIs and the audit
    summary."""
    import json
    import urllib.request
    from datetime import date, timedelta

    tables = post_json(f"{reader}/tables", {})["tables"]
    if "kpis_daily" not in tables:
        raise AssertionError(f"no kpis_daily in the lakehouse yet: {sorted(tables)}")
    newest = post_json(
        f"{reader}/sql", {"query": "SELECT max(window_start)::DATE AS d FROM kpis_daily"}
    )
    last = date.fromisoformat(newest["rows"][0][0])
    first = last - timedelta(days=6)
    kpis = post_json(
        f"{reader}/kpis", {"window": "day", "first_day": str(first), "last_day": str(last)}
    )
    audit = post_json(f"{reader}/audit", {"lens": "summary"})
    with urllib.request.urlopen(f"{reader}/report/", timeout=30) as page:
        report = page.read().decode()
    if not kpis["rows"] or "<img" not in report:
        raise AssertionError(f"/kpis {json.dumps(kpis)[:200]}; report {len(report)} bytes")
    return (
        f"/kpis {first}..{last}: {len(kpis['rows'])} days; /audit summary: "
        f"{len(audit['rows'])} periods; /report/: {len(report) // 1024} KiB"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dagster", default="http://127.0.0.1:3000")
    parser.add_argument("--scoring", default="http://127.0.0.1:3001")
    parser.add_argument("--reader", default=None, help="the read API, e.g. http://127.0.0.1:3002")
    args = parser.parse_args(argv)
    customer = None
    failures = 0
    stages = [
        ("Dagster runs", lambda: check_runs(args.dagster)),
        ("assets", lambda: check_assets(args.dagster)),
        ("lakehouse tables", check_tables),
        ("online features", lambda: check_online(customer)),
        ("scoring service", lambda: check_scoring(args.scoring, customer)),
        ("the docs' examples", lambda: check_doc_examples(args.scoring, args.reader)),
    ]
    if args.reader:
        stages.append(("read API over the lakehouse", lambda: check_reader(args.reader)))
    try:
        customer = sample_customer()
    except Exception as error:  # noqa: BLE001 (reported as a failed stage)
        print(f"FAIL  feature snapshots: {error}")
        failures += 1
    for name, check in stages:
        try:
            print(f"ok    {name}: {check()}")
        except Exception as error:  # noqa: BLE001 (each stage is reported, then the next runs)
            print(f"FAIL  {name}: {error}")
            failures += 1
    print("all stages passed" if not failures else f"{failures} stage(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
