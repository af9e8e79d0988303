"""The real ``feast`` CLI in a temporary copy of ``feature_repo/``, on the pipeline's snapshots."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg

from analytics_assets import settings
from analytics_assets.defs.features.assets import customer_features
from analytics_assets.lib.feast_repo import config_dict, open_store, write_cli_config
from tests.features.conftest import FIRST, LAST, range_tags

FEAST = str(Path(sys.executable).parent / "feast")


def feast(repo: Path, *args: str) -> str:
    """The CLI in ``repo``, configured the way ``analytics feast-env`` says (this test's stores
    are under its own ``ANALYTICS_HOME``)."""
    env = {**os.environ, "FEAST_FS_YAML_FILE_PATH": str(write_cli_config(repo))}
    done = subprocess.run(
        [FEAST, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"feast {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_feast_cli_applies_materializes_and_serves(
    history, feature_resources, instance, tmp_path
) -> None:
    assert dg.materialize(
        [customer_features],
        resources=feature_resources,
        instance=instance,
        tags=range_tags(FIRST, LAST),
    ).success
    repo = tmp_path / "feature_repo"
    shutil.copytree(
        settings.feature_repo_path(), repo, ignore=shutil.ignore_patterns("__pycache__")
    )

    planned = feast(repo, "plan")
    assert "Created feature view purchase_behaviour" in planned
    feast(repo, "apply")
    listed = feast(repo, "feature-views", "list")
    assert "purchase_behaviour" in listed and "engagement" in listed
    # first a fixed window up to the Mar 9 snapshot (valid from Mar 10); then incrementally on
    # to the last one (as of Mar 10, valid from Mar 11). Feast's windows are [start, end).
    feast(repo, "materialize", "2024-03-01T00:00:00", "2024-03-10T00:00:01")
    store = open_store(repo)  # the same repo through the SDK, in this process
    read = store.get_online_features(
        features=["purchase_behaviour:days_since_last_purchase"], entity_rows=[{"customer_id": "a"}]
    )
    assert read.to_dict()["days_since_last_purchase"] == [6.0]
    feast(repo, "materialize-incremental", "2024-03-11T00:00:01")
    served = online(repo)
    assert '"days_since_last_purchase": [\n        7.0' in served, served
    assert '"total_revenue": [\n        45.0' in served, served
    assert '"sessions_28d": [\n        3' in served, served


def online(repo: Path) -> str:
    return feast(
        repo,
        "get-online-features",
        "-e",
        "customer_id=a",
        "-f",
        "purchase_behaviour:total_revenue",
        "-f",
        "purchase_behaviour:days_since_last_purchase",
        "-f",
        "engagement:sessions_28d",
    )


def test_feature_store_yaml_as_it_is_names_the_code_locations_defaults(monkeypatch) -> None:
    """With nothing set, the CLI in feature_repo/ and the code location share one registry and
    one online store: the yaml's relative paths, resolved the way Feast resolves them (the
    registry URL from the working directory, feature_repo/; the SQLite file from the repo),
    are the embedded defaults under <repo>/.analytics."""
    import yaml

    for name in ("ANALYTICS_HOME", "FEAST_REGISTRY_TYPE", "FEAST_REGISTRY_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("FEAST_ONLINE_STORE", raising=False)
    repo = settings.REPO_ROOT / "feature_repo"
    raw = yaml.safe_load((repo / "feature_store.yaml").read_text())
    used = config_dict(repo)
    registry = Path(raw["registry"]["path"].removeprefix("sqlite:///"))
    assert raw["registry"]["registry_type"] == used["registry"]["registry_type"] == "sql"
    assert used["registry"]["path"] == f"sqlite:///{(repo / registry).resolve()}"
    assert raw["online_store"]["type"] == used["online_store"]["type"] == "sqlite"
    assert Path(used["online_store"]["path"]) == (repo / raw["online_store"]["path"]).resolve()
    assert Path(used["online_store"]["path"]).parent == settings.REPO_ROOT / ".analytics" / "feast"


def test_feast_cli_works_in_feature_repo_with_nothing_set(tmp_path) -> None:
    """``cd feature_repo && feast plan`` in a fresh layout (feature_repo/ beside .analytics/,
    as ``make env`` leaves it), with no Feast or ANALYTICS variable set."""
    layout = tmp_path / "clone"
    shutil.copytree(
        settings.feature_repo_path(),
        layout / "feature_repo",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (layout / ".analytics" / "feast").mkdir(parents=True)
    unset = {"ANALYTICS_HOME", "FEAST_FS_YAML_FILE_PATH", "FEAST_ONLINE_STORE"}
    env = {k: v for k, v in os.environ.items() if k not in unset and not k.startswith("FEAST_")}
    done = subprocess.run(
        [FEAST, "plan"],
        cwd=layout / "feature_repo",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Created feature service churn_v1" in done.stdout
    assert (layout / ".analytics" / "feast" / "registry.sqlite").exists()
