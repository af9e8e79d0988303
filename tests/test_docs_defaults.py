"""The configuration table of docs/operations.md against the product: each numeric default it
states is what ``settings`` returns with nothing set, or what the Makefile and the services
use for ports; and docs/serving.md's worker default is the service's."""

from __future__ import annotations

import inspect
import re

import pytest

from analytics_assets import settings

DOC = settings.REPO_ROOT / "docs" / "operations.md"
ROW = re.compile(r"^\| (`[A-Z_]+`(?:, `[A-Z_]+`)*) \| (.*) \|$", re.MULTILINE)


def documented() -> dict[str, str]:
    """Variable -> its documented default (the backticked values of the row, in order)."""
    found = {}
    for names, defaults in ROW.findall(DOC.read_text()):
        values = re.findall(r"`([^`]*)`", defaults)
        for name, value in zip(re.findall(r"`([A-Z_]+)`", names), values, strict=False):
            found[name] = value
    return found


def readers() -> dict[str, object]:
    """Variable -> the settings function that reads only it."""
    found = {}
    for _, function in inspect.getmembers(settings, inspect.isfunction):
        if function.__module__ != settings.__name__:
            continue
        names = re.findall(r'_env\("([A-Z_]+)"\)', inspect.getsource(function))
        if len(set(names)) == 1:
            found[names[0]] = function
    return found


def number(text: str) -> float | None:
    try:
        return float(text.replace("_", ""))
    except ValueError:
        return None


def test_every_numeric_default_is_the_products(monkeypatch: pytest.MonkeyPatch) -> None:
    docs, functions = documented(), readers()
    for name in docs:
        monkeypatch.delenv(name, raising=False)
    checked = []
    for name, value in docs.items():
        expected = number(value)
        if expected is None or name not in functions:
            continue
        got = functions[name]()
        got = float(got) if isinstance(got, bool | int | float) else None
        assert got == expected, f"docs/operations.md says {name} defaults to {value}, not {got}"
        checked.append(name)
    assert {"SCORING_WORKERS", "ANALYTICS_SENSOR_INTERVAL_S", "KAFKA_MAX_WAIT_S"} <= set(checked)


def test_ports_are_the_makefiles_and_the_services() -> None:
    docs = documented()
    makefile = dict(
        re.findall(r"^([A-Z_]+) \?= (\S+)$", (settings.REPO_ROOT / "Makefile").read_text(), re.M)
    )
    for name in (
        "DAGSTER_PORT",
        "SERVING_PORT",
        "READ_API_PORT",
        "MLFLOW_PORT",
        "MLFLOW_UI_WORKERS",
    ):
        assert docs[name] == makefile[name], name
    for service, name in (
        ("customer_scoring", "SERVING_PORT"),
        ("analytics_reader", "READ_API_PORT"),
    ):
        source = (settings.REPO_ROOT / "bentos" / service / "service.py").read_text()
        assert f'"port": {docs[name]}' in source, (service, name)
    serving = (settings.REPO_ROOT / "docs" / "serving.md").read_text()
    assert f"processes (default {docs['SCORING_WORKERS']})" in serving
