"""Opening the Feast repo in ``feature_repo/`` from Python, the way the ``feast`` CLI does.

``feature_store.yaml`` names the default stores as they are; the code location puts in the
ones :func:`analytics_assets.settings.feast_environment` chooses (equal to those by default,
``tests/features/test_feast_cli.py``), and :func:`write_cli_config` writes that configuration
for the CLI (Feast's ``FEAST_FS_YAML_FILE_PATH``). Feast is imported lazily: it is heavy, and
most runs never touch it.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from analytics_assets import settings

if TYPE_CHECKING:
    from feast import FeatureStore, RepoConfig
    from feast.repo_contents import RepoContents


def config_dict(repo_path: Path) -> dict:
    """``feature_store.yaml`` with the registry and online store the environment chooses."""
    config = yaml.safe_load((repo_path / "feature_store.yaml").read_text())
    env = settings.feast_environment()
    config["registry"] = {
        **config.get("registry", {}),
        "registry_type": env["FEAST_REGISTRY_TYPE"],
        "path": env["FEAST_REGISTRY_PATH"],
    }
    online = yaml.safe_load(env["FEAST_ONLINE_STORE"])
    config["online_store"] = {"type": online} if isinstance(online, str) else online
    return config


def repo_config(repo_path: Path) -> RepoConfig:
    from feast import RepoConfig

    config = RepoConfig(**config_dict(repo_path))
    config.repo_path = repo_path
    return config


def write_cli_config(repo_path: Path) -> Path:
    """The configuration the code location uses, as a ``feature_store.yaml`` under
    ``<home>/feast/``, for the CLI (``FEAST_FS_YAML_FILE_PATH``); returns its path."""
    from analytics_assets.lib.atomic_files import write_text

    path = settings.analytics_home() / "feast" / "feature_store.yaml"
    header = (
        "# written by `analytics feast-env` from feature_repo/feature_store.yaml and the "
        "environment; do not edit\n"
    )
    write_text(path, header + yaml.safe_dump(config_dict(repo_path), sort_keys=False))
    return path


def open_store(repo_path: Path) -> FeatureStore:
    from feast import FeatureStore

    return FeatureStore(repo_path=str(repo_path), config=repo_config(repo_path))


@contextmanager
def _inside(repo_path: Path) -> Iterator[None]:
    """Feast imports repo files as top-level modules relative to the working directory."""
    previous = Path.cwd()
    names = {p.stem for p in repo_path.glob("*.py")}
    for name in names:  # another copy of the repo may have been imported in this process
        sys.modules.pop(name, None)
    sys.path.insert(0, str(repo_path))
    os.chdir(repo_path)
    try:
        yield
    finally:
        os.chdir(previous)
        sys.path.remove(str(repo_path))


def repo_contents(repo_path: Path, project: str) -> RepoContents:
    """Every Feast object the repo defines (what ``feast apply`` would register), with the
    ``project`` of ``feature_store.yaml`` when the repo declares none (as the CLI does)."""
    from feast import Project
    from feast.repo_operations import parse_repo

    with _inside(repo_path):
        contents = parse_repo(repo_path)
    if not contents.projects:
        contents.projects.append(Project(name=project))
    return contents


@dataclass(frozen=True)
class Applied:
    contents: RepoContents
    registry_diff: str
    infra_diff: str


def apply(store: FeatureStore, repo_path: Path) -> Applied:
    """Register the repo's objects and create their online tables: ``feast apply``, through the
    SDK. Returns what it found and the diffs it applied (without terminal colours)."""
    from feast.repo_operations import apply_total_with_repo_instance

    contents = repo_contents(repo_path, store.project)
    registry_diff, infra_diff, _ = store.plan(contents)
    apply_total_with_repo_instance(
        store, store.project, store.registry, contents, skip_source_validation=False
    )
    return Applied(contents, _plain(registry_diff.to_string()), _plain(infra_diff.to_string()))


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text).strip()


def repo_digest(repo_path: Path) -> str:
    """A short SHA-256 of the repo's definitions (the ``*.py`` files and
    ``feature_store.yaml``): it changes exactly when ``feast apply`` has something to do."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted([*repo_path.glob("*.py"), repo_path / "feature_store.yaml"]):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def feature_refs(store: FeatureStore, services: list[str]) -> list[str]:
    """``view:feature`` references of the named feature services, each once, in order."""
    refs: dict[str, None] = {}
    for name in services:
        for projection in store.get_feature_service(name).feature_view_projections:
            for feature in projection.features:
                refs[f"{projection.name_to_use()}:{feature.name}"] = None
    return list(refs)


def feature_names(store: FeatureStore, service: str) -> list[str]:
    """The feature names a feature service serves, in order (the columns a model reads)."""
    return [ref.split(":", 1)[1] for ref in feature_refs(store, [service])]
