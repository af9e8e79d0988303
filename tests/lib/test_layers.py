"""The library floor: lib/, scoring/ and the BentoML service import neither Dagster nor defs/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from analytics_assets import settings

FLOOR = ["analytics_assets/lib", "analytics_assets/scoring", "bentos"]


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("folder", FLOOR)
def test_the_floor_imports_no_dagster_and_no_defs(folder: str) -> None:
    files = sorted((settings.REPO_ROOT / folder).rglob("*.py"))
    assert files
    offending = {
        str(path.relative_to(settings.REPO_ROOT)): sorted(
            name
            for name in imported(path)
            if name.split(".")[0] in {"dagster", "dagster_duckdb", "dagster_mlflow"}
            or name.startswith("analytics_assets.defs")
        )
        for path in files
    }
    assert {path: names for path, names in offending.items() if names} == {}
