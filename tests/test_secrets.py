"""Passwords in URLs are never shown: resources configured from a set variable show the
variable (dg.EnvVar), and what goes into metadata is redacted."""

from __future__ import annotations

import dagster as dg

from analytics_assets import settings
from analytics_assets.resources import build_resources


def test_a_set_tracking_uri_is_an_env_var_not_a_value(analytics_home, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://mlflow:hunter2@db:5432/mlflow")
    resource = build_resources()["mlflow"]
    assert isinstance(resource.tracking_uri, dg.EnvVar)
    assert resource.tracking_uri.env_var_name == "MLFLOW_TRACKING_URI"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert build_resources()["mlflow"].tracking_uri == settings.mlflow_tracking_uri()


def test_redacted() -> None:
    assert settings.redacted("postgresql+psycopg://u:p%40ss@h:5432/db") == (
        "postgresql+psycopg://u:***@h:5432/db"
    )
    assert settings.redacted("http://mlflow:5000/x") == "http://mlflow:5000/x"
    assert settings.redacted("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"


def test_the_service_refuses_to_listen_beyond_loopback_without_a_key(monkeypatch) -> None:
    import pytest

    monkeypatch.delenv("SCORING_API_KEY", raising=False)
    monkeypatch.delenv("SCORING_HOST", raising=False)
    settings.check_serving_exposure()  # 127.0.0.1: fine
    monkeypatch.setenv("SCORING_HOST", "0.0.0.0")
    with pytest.raises(RuntimeError, match="SCORING_API_KEY"):
        settings.check_serving_exposure()
    monkeypatch.setenv("SCORING_API_KEY", "k")
    settings.check_serving_exposure()
