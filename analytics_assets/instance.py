"""The Dagster instance's ``dagster.yaml``: the repo's file, plus PostgreSQL storage when
``$DAGSTER_POSTGRES_URL`` is set.

The URL itself is never written: the storage block names the variable, which Dagster reads
when the webserver, the daemon and each run process start.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from analytics_assets import settings

POSTGRES_URL_ENV = "DAGSTER_POSTGRES_URL"
# runs, event logs and schedules in one PostgreSQL database (dagster-postgres)
POSTGRES_STORAGE = {"postgres": {"postgres_url": {"env": POSTGRES_URL_ENV}}}


def instance_config(base: Path | None = None) -> dict:
    """The instance configuration: ``dagster.yaml`` of the repo, with a ``storage`` block for
    PostgreSQL when ``$DAGSTER_POSTGRES_URL`` is set (else SQLite under ``DAGSTER_HOME``)."""
    config = yaml.safe_load((base or settings.REPO_ROOT / "dagster.yaml").read_text()) or {}
    if os.environ.get(POSTGRES_URL_ENV):
        config["storage"] = POSTGRES_STORAGE
    return config


def write_instance(dagster_home: Path | None = None) -> Path:
    """Write ``$DAGSTER_HOME/dagster.yaml`` (idempotent); returns its path."""
    home = dagster_home or settings.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    path = home / "dagster.yaml"
    header = "# written by `analytics dagster-home` from the repo's dagster.yaml\n"
    path.write_text(header + yaml.safe_dump(instance_config(), sort_keys=False))
    return path
