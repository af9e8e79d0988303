"""Resources shared by every domain, configured from the environment with embedded defaults."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from analytics_assets import settings


class LandingZone(dg.ConfigurableResource):
    """The folder producers drop micro-batch files into, and where unreadable files go."""

    root: str
    quarantine_root: str

    @property
    def root_path(self) -> Path:
        return Path(self.root)

    def quarantine_file(self, path: Path, batch_id: str) -> Path:
        """Move an unreadable file out of the landing zone; its name keeps the batch id."""
        target_dir = Path(self.quarantine_root)
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / f"{batch_id}__{path.name}"
        shutil.move(str(path), target)
        return target


class FeastRepo(dg.ConfigurableResource):
    """The Feast repo (``feature_repo/``) and the stores its ``feature_store.yaml`` names."""

    repo_path: str

    @property
    def path(self) -> Path:
        return Path(self.repo_path)

    def store(self):
        """A ``feast.FeatureStore`` on this repo's configuration."""
        from analytics_assets.feast_repo import open_store

        return open_store(self.path)


def warehouse_resource() -> DuckDBResource:
    return DuckDBResource(database=str(settings.warehouse_path()))


def landing_resource() -> LandingZone:
    return LandingZone(
        root=str(settings.landing_dir()), quarantine_root=str(settings.quarantine_dir())
    )


def build_resources() -> dict[str, object]:
    """Every resource of the code location, resolved from the environment now."""
    return {
        "warehouse": warehouse_resource(),
        "landing_zone": landing_resource(),
        "feast": FeastRepo(repo_path=str(settings.feature_repo_path())),
    }


WAREHOUSE_POOL = "duckdb_warehouse"
"""Concurrency pool of everything that writes the DuckDB file: one writer at a time."""

FEAST_REGISTRY_POOL = "feast_registry"
"""Concurrency pool of everything that writes the Feast registry (apply, materialize)."""
