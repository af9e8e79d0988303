"""``GET /experiments`` and ``GET /experiments/{name}`` on the real read API, over looks the
real assets wrote; the experiments page; roles and bad input."""

from __future__ import annotations

from tests.lake.conftest import EXPERIMENT


def test_experiments_are_listed_and_read_with_their_intervals(reader, role_keys) -> None:
    headers = {"X-API-Key": role_keys["analyst"]}
    with reader.client(timeout=60) as http:
        listed = http.get("/experiments", headers=headers)
        assert listed.status_code == 200, listed.text
        (summary,) = listed.json()["experiments"]
        assert summary["experiment"] == EXPERIMENT
        assert summary["verdict"] in {"ship", "stop", "keep_running"} and summary["reason"]
        assert summary["customers"] == 400 and summary["srm_passed"]
        one = http.get(f"/experiments/{EXPERIMENT}", headers=headers)
        assert one.status_code == 200, one.text
        detail = one.json()
        assert {(r["variant"], r["metric"]) for r in detail["results"]} == {
            (v, m) for v in ("control", "treatment") for m in ("conversion", "orders", "revenue")
        }
        (treated,) = [
            r for r in detail["results"] if r["variant"] == "treatment" and r["metric"] == "revenue"
        ]
        assert treated["customers"] == 200
        assert treated["ci_low"] <= treated["diff"] <= treated["ci_high"]
        assert treated["seq_low"] <= treated["cuped_diff"] <= treated["seq_high"]
        assert len({r["day"] for r in detail["history"]}) == 3  # the three daily looks
        missing = http.get("/experiments/no_such_thing", headers=headers)
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "unknown_experiment"
        page = http.get("/report/experiments", headers=headers)
        assert page.status_code == 200 and f"{EXPERIMENT}:" in page.text
        assert http.get("/experiments").status_code == 401
        scorer = http.get("/experiments", headers={"X-API-Key": role_keys["scorer"]})
        assert scorer.status_code == 403
        paths = http.get("/docs.json", headers=headers).json()["paths"]
        assert {"/experiments", "/experiments/{name}"} <= set(paths)
