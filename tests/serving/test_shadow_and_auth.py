"""Shadow mode (the challenger scores everyone, unanswered, into the log) and the API key."""

from __future__ import annotations

import json
import shutil
import time

import polars as pl
import pytest

from analytics_assets.lib.names import CHURN_MODEL
from analytics_assets.testing import serving
from analytics_assets.testing.feature_snapshot import customer_id
from tests.serving.conftest import home_env, run_server

KEY = "s3cret-key"
ROLE_KEYS: dict[str, str] = {}


@pytest.fixture(scope="module")
def shadow_server(serving_home, tmp_path_factory):
    home = tmp_path_factory.mktemp("shadow") / "analytics"
    shutil.copytree(serving_home, home, ignore=shutil.ignore_patterns("predictions"))
    with home_env(home):
        folder = serving.churn_folder(home / "work" / "churn_shadow", max_iter=30)
        serving.promote(folder, CHURN_MODEL, "7", "churn_v1", challenger=True)
    from analytics_assets.lib import api_keys

    keys = home / "api_keys.json"
    ROLE_KEYS.update({r: api_keys.add(keys, f"{r}-key", [r]) for r in api_keys.ROLES})
    log = tmp_path_factory.mktemp("logs") / "shadow.log"
    with run_server(
        home, log, SCORING_SHADOW="1", SCORING_API_KEY=KEY, ANALYTICS_API_KEYS_FILE=str(keys)
    ) as running:
        yield running


def test_api_key(shadow_server) -> None:
    body = {"customer_ids": ["c0000001"]}
    with shadow_server.client() as http:
        assert http.post("/churn", json=body).status_code == 401
        assert http.post("/churn", json=body, headers={"X-API-Key": "wrong"}).status_code == 401
        assert http.post("/churn", json=body, headers={"X-API-Key": KEY}).status_code == 200
        bearer = {"Authorization": f"Bearer {KEY}"}
        assert http.post("/churn", json=body, headers=bearer).status_code == 200
        assert http.get("/").status_code == 401
        for probe in ("/readyz", "/livez", "/metrics"):
            assert http.get(probe).status_code == 200


def test_roles(shadow_server) -> None:
    """Scoring needs the scorer role (or admin), /reload the admin role, which is audited."""
    body = {"customer_ids": ["c0000001"]}
    log = shadow_server.home / "audit" / "admin.jsonl"
    before = len(log.read_text().splitlines()) if log.exists() else 0  # the copied home's
    with shadow_server.client() as http:
        for role, churn, reload in (
            ("scorer", 200, 403),
            ("analyst", 403, 403),
            ("admin", 200, 200),
        ):
            headers = {"X-API-Key": ROLE_KEYS[role]}
            assert http.post("/churn", json=body, headers=headers).status_code == churn, role
            answer = http.post("/reload", json={}, headers=headers)
            assert answer.status_code == reload, (role, answer.text)
            if reload == 403:
                assert "needs the admin role" in answer.json()["error"]["message"]
    audit = log.read_text().splitlines()[before:]
    assert [json.loads(a)["who"] for a in audit] == ["admin-key"]


def test_shadow_scores_everyone_and_answers_with_the_champion(shadow_server) -> None:
    ids = [customer_id(i) for i in range(1000, 1200)]  # not asked for before
    with shadow_server.client(headers={"X-API-Key": KEY}) as http:
        served = {
            m["role"]: m["model_version"]
            for m in http.post("/reload", json={}).json()["models"]
            if m["model"] == CHURN_MODEL
        }
        answer = http.post("/churn", json={"customer_ids": ids}).json()
    champion = served["champion"]
    assert served["challenger"] == "7" and champion != "7"
    assert {(p["role"], p["model_version"]) for p in answer["predictions"]} == {
        ("champion", champion)
    }
    time.sleep(2.5)
    log = pl.read_parquet(shadow_server.home / "predictions" / CHURN_MODEL / "**" / "*.parquet")
    request = log.filter(pl.col("customer_id").is_in(ids))
    shadow = request.filter(~pl.col("served"))
    assert shadow["model_version"].unique().to_list() == ["7"]
    assert shadow["role"].unique().to_list() == ["challenger"]
    assert sorted(shadow["customer_id"].to_list()) == sorted(ids)
    assert request.filter(pl.col("served"))["model_version"].unique().to_list() == [champion]
