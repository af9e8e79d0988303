"""The layers: lib/, scoring/, the producers and the BentoML service import neither Dagster nor
defs/; the domains under defs/ import each other without a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from analytics_assets import settings

FLOOR = [
    "analytics_assets/lib",
    "analytics_assets/scoring",
    "analytics_assets/producers",
    "bentos",
]


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


def domain_imports() -> dict[str, set[str]]:
    """defs/<domain> -> the other domains its modules import."""
    defs = settings.REPO_ROOT / "analytics_assets" / "defs"
    graph: dict[str, set[str]] = {}
    for folder in sorted(p for p in defs.iterdir() if (p / "__init__.py").exists()):
        graph[folder.name] = {
            name.split(".")[2]
            for path in folder.glob("*.py")
            for name in imported(path)
            if name.startswith("analytics_assets.defs.") and name.split(".")[2] != folder.name
        }
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle between domains, or ``None``."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*path, node, nxt]
            if nxt not in state and (found := visit(nxt, [*path, node])):
                return found
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [])):
            return found
    return None


def test_domains_import_each_other_without_a_cycle() -> None:
    graph = domain_imports()
    assert {"ingest", "analytics", "features", "training", "monitoring"} <= set(graph)
    assert cycle(graph) is None, cycle(graph)
    # a downstream domain may use an upstream one's transforms, never the other way round
    assert "features" not in graph["analytics"]


def test_the_cycle_finder_finds_one() -> None:
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None
