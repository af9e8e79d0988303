"""The scoring service over HTTP: every endpoint, the bad-input corpus, unknown customers, a new
champion swapped in while requests run, the challenger's share of traffic, the prediction log."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import polars as pl

from analytics_assets.lib.names import CHURN_MODEL, CLV_MODEL
from analytics_assets.testing import serving
from analytics_assets.testing.feature_snapshot import customer_id
from bentos.customer_scoring.routing import bucket
from tests.serving.conftest import CUSTOMERS, home_env

IDS = [customer_id(i) for i in range(CUSTOMERS)]


def test_churn_known_and_unknown(server) -> None:
    with server.client() as http:
        answer = http.post("/churn", json={"customer_ids": [IDS[1], "nobody", IDS[2]]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == CHURN_MODEL and body["feature_service"] == "churn_v1"
    first, unknown, third = body["predictions"]
    assert [p["customer_id"] for p in body["predictions"]] == [IDS[1], "nobody", IDS[2]]
    assert first["known"] and 0.0 < first["churn_probability"] < 1.0
    assert first["features_as_of"].startswith("2024-03-11")
    assert unknown == {
        "customer_id": "nobody",
        "known": False,
        "churn_probability": None,
        "model_version": unknown["model_version"],
        "role": unknown["role"],
        "features_as_of": None,
    }


def test_clv_horizon(server) -> None:
    with server.client() as http:
        short = http.post("/clv", json={"customer_ids": IDS[:50], "horizon_days": 30}).json()
        long = http.post("/clv", json={"customer_ids": IDS[:50], "horizon_days": 365}).json()
    assert short["horizon_days"] == 30 and long["horizon_days"] == 365
    pairs = [
        (s, lg)
        for s, lg in zip(short["predictions"], long["predictions"], strict=True)
        if s["expected_purchases"] is not None
    ]
    assert len(pairs) > 40
    for s, lg in pairs:
        assert 0.0 <= s["probability_alive"] <= 1.0
        assert lg["expected_purchases"] > s["expected_purchases"] >= 0.0
        assert s["expected_revenue"] == s["expected_purchases"] * s["expected_average_spend"]


def test_score_what_if(server) -> None:
    row = {"frequency": 3, "recency_days": 40.0, "tenure_days": 60.0, "monetary_value": 25.0}
    with server.client() as http:
        churn = http.post("/score", json={"model": "churn", "rows": [row, {}]}).json()
        value = http.post("/score", json={"model": "clv", "rows": [row], "horizon_days": 90})
    assert churn["model"] == CHURN_MODEL and len(churn["features"]) == 10
    assert all(0 < p["churn_probability"] < 1 for p in churn["predictions"])
    assert value.status_code == 200, value.text
    (predicted,) = value.json()["predictions"]
    assert predicted["expected_purchases"] > 0 and 0 < predicted["probability_alive"] <= 1


BAD_INPUTS: list[tuple[str, bytes | str, dict]] = [
    ("/churn", b"not json", {}),
    ("/churn", b"", {}),
    ("/churn", b"[]", {}),
    ("/churn", b'"c1"', {}),
    ("/churn", b'{"customer_ids": []}', {}),
    ("/churn", b'{"customer_ids": "c0000001"}', {}),
    ("/churn", b'{"customer_ids": [1, 2]}', {}),
    ("/churn", b'{"customer_ids": [null]}', {}),
    ("/churn", b'{"customer_ids": [""]}', {}),
    ("/churn", b'{"customer_ids": ["' + b"x" * 200 + b'"]}', {}),
    ("/churn", json.dumps({"customer_ids": IDS[:1001]}), {}),
    ("/churn", b'{"customer_ids": ["c1"]' + b"}" * 3, {}),
    ("/churn", b"[" * 50_000 + b"]" * 50_000, {}),
    ("/churn", b'{"customer_ids": ["\xff\xfe"]}', {}),
    # bodies are read as JSON whatever they claim to be: no multipart or pickle parsing
    (
        "/churn",
        b"--x\r\nContent-Disposition: form-data\r\n\r\n1\r\n--x--",
        {"content-type": "multipart/form-data; boundary=x"},
    ),
    ("/churn", b"\x80\x04K\x01.", {"content-type": "application/vnd.bentoml+pickle"}),
    ("/clv", b'{"customer_ids": ["c1"], "horizon_days": "180"}', {}),
    ("/clv", b'{"customer_ids": ["c1"], "horizon_days": 0}', {}),
    ("/clv", b'{"customer_ids": ["c1"], "horizon_days": 1.5}', {}),
    ("/clv", b'{"customer_ids": ["c1"], "horizon_days": NaN}', {}),
    ("/clv", b'{"customer_ids": ["c1"], "horizon_days": 1e999}', {}),
    ("/score", b'{"model": "churn", "rows": [{"frequency": NaN}]}', {}),
    ("/score", b'{"model": "churn", "rows": [{"frequency": Infinity}]}', {}),
    ("/score", b'{"model": "churn", "rows": [{"frequency": -Infinity}]}', {}),
    ("/score", b'{"model": "churn", "rows": [{"frequency": "three"}]}', {}),
    ("/score", b'{"model": "churn", "rows": [{"frequencyy": 3}]}', {}),
    ("/score", b'{"model": "churn", "rows": []}', {}),
    ("/score", b'{"model": "other", "rows": [{}]}', {}),
    ("/score", b'{"model": "churn", "rows": [[1, 2]]}', {}),
]


def test_bad_inputs_get_4xx_and_the_server_stays_healthy(server) -> None:
    with server.client() as http:
        for path, body, headers in BAD_INPUTS:
            answer = http.post(path, content=body, headers=headers)
            assert 400 <= answer.status_code < 500, (path, body[:80], answer.status_code)
            assert answer.json(), answer.text  # a message, not an empty body
        big = b'{"customer_ids": ["' + b"c" * (2 << 20) + b'"]}'
        assert http.post("/churn", content=big).status_code == 413
        chunked = http.post("/churn", content=iter([b'{"customer_ids": ["', b"c" * (2 << 20)]))
        assert chunked.status_code == 413
        assert http.get("/churn").status_code == 405
        assert http.post("/nowhere", json={}).status_code == 404
        assert http.get("/readyz").status_code == 200
        ok = http.post("/churn", json={"customer_ids": [IDS[0]]})
        assert ok.status_code == 200
        unknown = http.post("/score", json={"model": "churn", "rows": [{"x": 1}]}).json()
    assert "x is not an input of churn_model" in json.dumps(unknown)
    assert "status=5" not in server.output()  # the access log holds no 5xx


def test_metrics_and_probes(server) -> None:
    with server.client() as http:
        http.post("/churn", json={"customer_ids": IDS[:3]})
        metrics = http.get("/metrics").text
        assert http.get("/livez").status_code == 200
        assert http.get("/healthz").status_code == 200
    assert "customer_scoring_predictions_total" in metrics
    assert "bentoml_service_request_duration_seconds" in metrics


def test_new_champion_while_requests_run_then_challenger_share(server) -> None:
    failures: list[str] = []
    versions: list[str] = []
    # each client's answers in its own order: its requests are sequential, so once it has seen
    # version 2 it must never see 1 again (across clients, an answer started on version 1
    # before the swap may come back after another client's first version 2)
    per_client: list[list[str]] = [[], [], []]
    stop = threading.Event()

    def hammer(seen: list[str]) -> None:
        with server.client() as http:
            while not stop.is_set():
                answer = http.post("/churn", json={"customer_ids": IDS[:20]})
                if answer.status_code != 200:
                    failures.append(f"{answer.status_code} {answer.text}")
                    continue
                answered = [
                    p["model_version"]
                    for p in answer.json()["predictions"]
                    if p["role"] == "champion"
                ]
                if len(set(answered)) != 1:  # one request, one model
                    failures.append(f"versions mixed in one answer: {answered}")
                seen.extend(answered)
                versions.extend(answered)

    threads = [threading.Thread(target=hammer, args=(seen,)) for seen in per_client]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        with home_env(server.home):
            folder = serving.churn_folder(server.home / "work" / "churn_v2", max_iter=50)
            serving.promote(folder, CHURN_MODEL, "2", "churn_v1")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(
            not seen or seen[-1] != "2" for seen in per_client
        ):
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not failures, failures[:3]
    assert versions[0] == "1" and versions[-1] == "2"
    for seen in per_client:
        assert seen and seen[-1] == "2"
        switched = seen.index("2")
        assert set(seen[switched:]) == {"2"}  # no flapping back

    # a kept challenger gets its share (0.3 here) by a hash of the customer id; this one is
    # a Pipeline, which treelite cannot convert: scored by scikit-learn, and /reload says why
    with home_env(server.home):
        folder = serving.churn_folder(server.home / "work" / "churn_v3", max_iter=30, pipeline=True)
        serving.promote(folder, CHURN_MODEL, "3", "churn_v1", challenger=True)
    with server.client() as http:
        status = http.post("/reload", json={}).json()
        assert {(m["model"], m["role"], m["model_version"]) for m in status["models"]} >= {
            (CHURN_MODEL, "champion", "2"),
            (CHURN_MODEL, "challenger", "3"),
        }
        scorers = {(m["model"], m["role"]): m["scorer"] for m in status["models"]}
        assert scorers[(CHURN_MODEL, "champion")].startswith("treelite ")
        assert scorers[(CHURN_MODEL, "challenger")].startswith("scikit-learn (fallback: ")
        assert "cannot convert Pipeline" in scorers[(CHURN_MODEL, "challenger")]
        answers = [
            p
            for chunk in range(0, CUSTOMERS, 1000)
            for p in http.post("/churn", json={"customer_ids": IDS[chunk : chunk + 1000]}).json()[
                "predictions"
            ]
        ]
        again = http.post("/churn", json={"customer_ids": IDS[:1000]}).json()["predictions"]
        clv = http.post("/clv", json={"customer_ids": IDS[:100]}).json()["predictions"]
    roles = np.array([p["role"] == "challenger" for p in answers])
    assert abs(roles.mean() - 0.3) < 0.04, roles.mean()
    assert [p["role"] for p in again] == [p["role"] for p in answers[:1000]]
    expected = np.array([bucket(c) < 0.3 for c in IDS])
    assert (roles == expected).all()
    assert {p["model_version"] for p, r in zip(answers, roles, strict=True) if r} == {"3"}
    assert {p["role"] for p in clv} == {"champion"}  # no CLV challenger: all champion

    # every prediction is in the log, with its version and features
    time.sleep(2.5)
    log = pl.read_parquet(server.home / "predictions" / CHURN_MODEL / "**" / "*.parquet")
    assert {"2", "3"} <= set(log["model_version"].to_list())
    assert {"frequency", "sessions_28d", "churn_probability", "request_id"} <= set(log.columns)
    served = log.filter(pl.col("endpoint") == "churn")
    assert served["served"].all()
    values = pl.read_parquet(server.home / "predictions" / CLV_MODEL / "**" / "*.parquet")
    assert {"horizon_days", "expected_revenue", "recency_days"} <= set(values.columns)
