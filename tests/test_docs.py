"""The docs stay true to the tree: every repository path the README and docs/ name exists,
every relative link resolves, and the front page stays a front page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", REPO / "BENCHMARKS.md", *sorted((REPO / "docs").glob("*.md"))]
# first segments of paths that live under $ANALYTICS_HOME (state), not in the repository
STATE = {
    "landing", "archive", "quarantine", "alerts", "features", "feast", "mlflow", "models",
    "bentoml", "dagster_home", "predictions", "reports", "logs", ".analytics", "src", "env",
    "artifacts", "lake", "lakehouse", "data", "erasures", "audit",
}  # fmt: skip
TAG_NAMESPACES = {"analytics", "dagster", "dagster-celery"}  # run tags such as analytics/claims
ROOTS = (
    "",
    "analytics_assets/",
    "bentos/customer_scoring/",
    "bentos/analytics_reader/",
    "feature_repo/",
)
SUFFIXES = (".py", ".yaml", ".yml", ".md", ".toml", ".txt", ".lock")


def named_paths(text: str) -> set[str]:
    """Backticked tokens that look like repository paths (no placeholders, globs or
    variables), and relative link targets."""
    found = set()
    for token in re.findall(r"`([^`\s]+)`", text):
        token = token.rstrip(".,:;")
        if any(c in token for c in "<>*$={}()[]'\"@") or token.startswith(("http", "-", "/")):
            continue
        if "/" not in token and not token.endswith(SUFFIXES):
            continue
        head = token.split("/")[0]
        if not re.fullmatch(r"[\w./-]+", token) or head in STATE:
            continue
        if "/" in token and head in TAG_NAMESPACES:
            continue
        found.add(token)
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if not target.startswith(("http", "mailto:")):
            found.add(target)
    return found


def resolves(page: Path, path: str) -> bool:
    if (page.parent / path).exists() or any((REPO / root / path).exists() for root in ROOTS):
        return True
    if "/" not in path:  # a bare file name, in a page about its folder
        return any(_tracked(found) for found in REPO.rglob(path))
    return False


def _tracked(path: Path) -> bool:
    return not {".venv", ".analytics", "__pycache__"} & set(path.relative_to(REPO).parts)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_path_the_docs_name_exists(page: Path) -> None:
    missing = sorted(p for p in named_paths(page.read_text()) if not resolves(page, p))
    assert missing == []


def test_the_readme_is_a_front_page_linking_every_doc() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 175
    for doc in (REPO / "docs").glob("*.md"):
        assert f"(docs/{doc.name})" in readme, doc.name


def test_the_checker_sees_a_missing_path() -> None:
    text = "see `analytics_assets/defs/nowhere.py` and [a page](docs/missing.md)"
    assert named_paths(text) == {"analytics_assets/defs/nowhere.py", "docs/missing.md"}
    assert not resolves(REPO / "README.md", "analytics_assets/defs/nowhere.py")
