"""``bentoml build`` makes a bento of the service offline, with the current champions; the
bento's pinned requirements are the locked versions."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import yaml

from analytics_assets import settings
from tests.serving.conftest import SERVICE_DIR


def test_requirements_match_the_lock() -> None:
    lines = (SERVICE_DIR / "requirements.txt").read_text().splitlines()
    pins = [line.split("==") for line in lines if line and not line.startswith("#")]
    assert pins
    for name, pinned in pins:
        assert version(name.split("[")[0]) == pinned, name


def test_build_offline(serving_home: Path) -> None:
    env = {
        **os.environ,
        "ANALYTICS_HOME": str(serving_home),
        "BENTOML_HOME": str(serving_home / "bentoml"),
        # any attempt to reach a package index fails
        "PIP_NO_INDEX": "1",
        "UV_OFFLINE": "1",
    }
    bentoml = Path(sys.executable).parent / "bentoml"
    built = subprocess.run(
        [str(bentoml), "build", "-f", "bentos/customer_scoring/bentofile.yaml", "."],
        cwd=settings.REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    root = serving_home / "bentoml" / "bentos" / "customer_scoring"
    bento = root / (root / "latest").read_text().strip()
    info = yaml.safe_load((bento / "bento.yaml").read_text())
    assert info["service"] == "bentos.customer_scoring.service:CustomerScoring"
    assert {m["tag"].split(":")[0] for m in info["models"]} == {"churn_model", "clv_model"}
    for path in (
        "src/bentos/customer_scoring/service.py",
        "src/analytics_assets/scoring/customer_value.py",
        "src/analytics_assets/lib/online_reader.py",
        "src/feature_repo/feature_store.yaml",
        "env/python/requirements.txt",
    ):
        assert (bento / path).is_file(), path
    assert not list(bento.rglob("test_*.py"))
    packed = {p.relative_to(bento / "src").as_posix() for p in (bento / "src").rglob("*.py")}
    assert not [p for p in packed if p.startswith("analytics_assets/defs")], packed
    assert "analytics_assets/resources.py" not in packed
    # the packed code alone imports the service (the repo's own copy kept off the path), and
    # Dagster is never imported
    probe = (
        "import sys; src = sys.argv[1]; repo = sys.argv[2]\n"
        "sys.path = [src] + [p for p in sys.path if p and p.rstrip('/') != repo]\n"
        "import bentos.customer_scoring.service, analytics_assets\n"
        "assert analytics_assets.__file__.startswith(src), analytics_assets.__file__\n"
        "assert 'dagster' not in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(bento / "src"), str(settings.REPO_ROOT)],
        cwd=bento / "src",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # the container listens beyond loopback, so it needs SCORING_API_KEY to start
    assert {(e["name"], e["value"]) for e in info["envs"]} == {("SCORING_HOST", "0.0.0.0")}
