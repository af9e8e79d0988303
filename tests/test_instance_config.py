"""dagster.yaml: what makes the platform heal by itself is configured, and valid."""

from __future__ import annotations

from pathlib import Path

import yaml

from analytics_assets.defs.training.jobs import EXCLUSIVE_TAG, retrain_models

CONFIG = yaml.safe_load((Path(__file__).resolve().parents[1] / "dagster.yaml").read_text())


def test_the_instance_config_is_valid() -> None:
    from dagster._config import validate_config
    from dagster._core.instance.config import dagster_instance_config_schema

    result = validate_config(dagster_instance_config_schema(), CONFIG)
    assert result.success, result.errors


def test_dead_runs_are_failed_and_retried() -> None:
    monitoring = CONFIG["run_monitoring"]
    assert monitoring["enabled"] and monitoring["poll_interval_seconds"] <= 10
    assert monitoring["free_slots_after_run_end_seconds"] <= 60
    assert CONFIG["run_retries"]["enabled"] and CONFIG["run_retries"]["max_retries"] >= 1


def test_one_retrain_models_run_at_a_time() -> None:
    limits = CONFIG["concurrency"]["runs"]["tag_concurrency_limits"]
    value = retrain_models.tags[EXCLUSIVE_TAG]
    assert {"key": EXCLUSIVE_TAG, "value": value, "limit": 1} in limits
