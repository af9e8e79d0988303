"""The one door to BentoML's private model store (``lib/bento_store.py``): a store opened at a
chosen folder, verified copies saved as champion and challenger, ``:latest`` moving with each
promotion, challengers dropped but the one kept, and BentoML's own store under
``BENTOML_HOME`` in a fresh process. A change in BentoML's internals shows here first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from analytics_assets.lib import bento_store
from analytics_assets.lib.artifacts import BENTO_MODEL_FOLDER, DigestMismatch, directory_sha256
from analytics_assets.lib.model_registry import Fetched


def fetched(tmp_path: Path, version: str, content: bytes = b"model") -> Fetched:
    folder = tmp_path / f"mlflow-{version}"
    folder.mkdir()
    (folder / "MLmodel").write_bytes(content + version.encode())
    return Fetched("churn_model", version, folder, directory_sha256(folder), {})


def test_champions_and_challengers_in_a_store_at_a_chosen_folder(tmp_path) -> None:
    store = bento_store.open_store(tmp_path / "home")
    assert bento_store.current(store, "churn_model") is None
    tag = bento_store.save_champion(store, fetched(tmp_path, "1"), {"a": "b"}, {})
    assert tag == "churn_model:v1"
    assert (tmp_path / "home" / "models" / "churn_model" / "v1").is_dir()
    bento_store.save_champion(store, fetched(tmp_path, "2"), {}, {})
    latest = bento_store.current(store, "churn_model")
    assert str(latest.tag) == "churn_model:v2"
    assert latest.info.labels["mlflow_version"] == "2"
    assert (Path(latest.path_of(BENTO_MODEL_FOLDER)) / "MLmodel").read_bytes() == b"model2"
    for version in ("3", "4"):
        bento_store.save_challenger(store, fetched(tmp_path, version), {}, {})
    assert str(bento_store.current(store, "churn_model_challenger").tag).endswith(":v4")
    dropped = bento_store.drop_challengers(store, "churn_model", keep="4")
    assert dropped == ["churn_model_challenger:v3"]
    assert bento_store.drop_challengers(store, "churn_model") == ["churn_model_challenger:v4"]
    assert bento_store.current(store, "churn_model_challenger") is None


def test_a_copy_that_differs_from_its_digest_is_refused_and_removed(tmp_path) -> None:
    store = bento_store.open_store(tmp_path / "home")
    bento_store.save_champion(store, fetched(tmp_path, "1"), {}, {})
    bad = fetched(tmp_path, "2")
    wrong = Fetched(bad.name, bad.version, bad.path, "0" * 64, bad.tags)
    with pytest.raises(DigestMismatch):
        bento_store.save_champion(store, wrong, {}, {})
    assert str(bento_store.current(store, "churn_model").tag) == "churn_model:v1"


def test_the_serving_store_is_bentomls_own_under_bentoml_home(tmp_path) -> None:
    home = tmp_path / "bentoml"
    store = bento_store.open_store(home)
    bento_store.save_champion(store, fetched(tmp_path, "7"), {}, {})
    probe = (
        "from pathlib import Path\n"
        "from analytics_assets.lib import bento_store\n"
        "store = bento_store.serving_store(Path('/nonexistent'))\n"
        "print(bento_store.current(store, 'churn_model').tag)\n"
    )
    env = {**os.environ, "BENTOML_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("churn_model:v7")
