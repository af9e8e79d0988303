"""The read API for real: ``bentoml serve`` of bentos/analytics_reader over the lakehouse the
assets wrote, with the API key set, and the SQL sandbox's bad-input corpus."""

from __future__ import annotations

import tomllib
from datetime import date, timedelta

import pytest

from analytics_assets import settings
from analytics_assets.lib import lake, lakehouse
from tests.lake.conftest import ACTIVE_CUSTOMER, API_KEY, FIRST_DAY, READER_DIR
from tests.serving.conftest import error_of

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def client(reader):
    with reader.client(headers={"X-API-Key": API_KEY}) as c:
        yield c


def lake_sql(home, sql: str, *params) -> list[tuple]:
    where = lakehouse.Location.under(home / "lakehouse")
    with lake.connect(home / "predictions", where=where) as conn:
        return conn.execute(sql, list(params)).fetchall()


def test_kpis_by_window_and_range_equal_the_lake(client, lake_home) -> None:
    first = date.fromisoformat(FIRST_DAY) + timedelta(days=10)
    last = first + timedelta(days=89)
    body = {"window": "day", "first_day": str(first), "last_day": str(last)}
    answer = client.post("/kpis", json=body)
    assert answer.status_code == 200, answer.text
    rows = answer.json()["rows"]
    expected = lake_sql(
        lake_home,
        "SELECT window_start, events, revenue FROM kpis_daily "
        "WHERE window_start::DATE BETWEEN ? AND ? ORDER BY window_start",
        first,
        last,
    )
    assert len(rows) == len(expected) == 90
    assert [(r["events"], round(r["revenue"], 6)) for r in rows] == [
        (e, round(v, 6)) for _, e, v in expected
    ]
    hourly = client.post("/kpis", json={**body, "window": "hour", "last_day": str(first)}).json()
    assert 0 < len(hourly["rows"]) <= 24
    assert sum(r["events"] for r in hourly["rows"]) == rows[0]["events"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"window": "day", "first_day": "2024-03-01", "last_day": "2024-02-01"}, 400),
        ({"window": "week", "first_day": "2024-03-01", "last_day": "2024-03-02"}, 400),
        ({"window": "hour", "first_day": "2020-01-01", "last_day": "2024-01-01"}, 400),
        ({"window": "day", "first_day": "yesterday", "last_day": "2024-01-01"}, 400),
    ],
)
def test_bad_kpi_requests_are_4xx(client, body, status) -> None:
    answer = client.post("/kpis", json=body)
    assert answer.status_code == status, answer.text


def test_kpis_for_days_with_no_data_are_empty(client) -> None:
    answer = client.post(
        "/kpis", json={"window": "day", "first_day": "2030-01-01", "last_day": "2030-01-31"}
    )
    assert answer.status_code == 200 and answer.json()["rows"] == []


def test_audit_lenses_by_period(client, lake_home) -> None:
    whole = client.post("/audit", json={"lens": "summary"}).json()
    assert whole["table"] == "audit_summary" and "top10_share" in whole["columns"]
    assert len(whole["rows"]) == len(whole["periods"]) >= 3
    second = whole["periods"][1]
    one = client.post(
        "/audit", json={"lens": "summary", "first_period": second, "last_period": second}
    ).json()
    assert [r["period"] for r in one["rows"]] == [second]
    assert (
        one["rows"][0]["customers"]
        == lake_sql(lake_home, "SELECT customers FROM audit_summary WHERE period = ?", second)[0][0]
    )
    cake = client.post("/audit", json={"lens": "layer_cake", "first_period": second}).json()
    assert cake["rows"] and all(r["period"] >= second for r in cake["rows"])
    unknown = client.post(
        "/audit",
        json={"lens": "summary", "first_period": "1990-01-01", "last_period": "1990-02-01"},
    )
    assert unknown.status_code == 200 and unknown.json()["rows"] == []
    assert client.post("/audit", json={"lens": "horoscope"}).status_code == 400
    inverted = {"lens": "summary", "first_period": "2024-03-01", "last_period": "2024-01-01"}
    assert client.post("/audit", json=inverted).status_code == 400


def test_a_customers_profile(client, lake_home) -> None:
    answer = client.post("/customer", json={"customer_id": ACTIVE_CUSTOMER})
    assert answer.status_code == 200, answer.text
    profile = answer.json()
    stored = lake_sql(
        lake_home,
        "SELECT count(*), sum(events) FROM customer_daily WHERE customer_id = ?",
        ACTIVE_CUSTOMER,
    )[0]
    assert (profile["activity"]["active_days"], profile["activity"]["events"]) == stored
    assert profile["activity"]["recent_days"][0]["day"] == str(profile["activity"]["last_day"])
    assert [p["outputs"]["churn_probability"] for p in profile["predictions"]] == [0.75, 0.25]
    with_features = client.post("/customer", json={"customer_id": "c0000001"}).json()
    assert with_features["features"] and "recency_days" in with_features["features"]
    assert with_features["features_as_of"] is not None
    assert client.post("/customer", json={"customer_id": "nobody"}).status_code == 404
    assert client.post("/customer", json={"customer_id": ""}).status_code == 400


def test_sql_reads_the_lakehouse(client, lake_home) -> None:
    answer = client.post(
        "/sql", json={"query": "SELECT count(*) AS n, sum(revenue) AS r FROM customer_daily"}
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["columns"] == ["n", "r"] and result["row_count"] == 1
    n, r = lake_sql(lake_home, "SELECT count(*), sum(revenue) FROM customer_daily")[0]
    assert result["rows"][0][0] == n and abs(result["rows"][0][1] - r) < 1e-6
    tables = client.post("/tables").json()["tables"]
    assert {"events", "kpis_daily", "audit_summary", "predictions"} <= set(tables)


SANDBOX_CORPUS = [
    ("CREATE TABLE x AS SELECT 1", 400, "only SELECT"),
    ("INSERT INTO events SELECT * FROM events", 400, "only SELECT"),
    ("DELETE FROM events", 400, "only SELECT"),
    ("COPY (SELECT 1) TO '{lake}/evil.parquet'", 400, "only SELECT"),
    ("ATTACH '{home}/warehouse.duckdb' AS w", 400, "only SELECT"),
    ("DETACH lake", 400, "only SELECT"),
    ("INSTALL httpfs", 400, "only SELECT"),
    ("LOAD httpfs", 400, "only SELECT"),
    ("SET enable_external_access = true", 400, "only SELECT"),
    ("PRAGMA enable_profiling", 400, "only SELECT"),
    ("SELECT 1; SELECT 2", 400, "one statement"),
    ("SELECT * FROM read_csv('/etc/passwd')", 403, "only the lakehouse"),
    ("SELECT * FROM read_parquet('{lake}/../../warehouse.duckdb')", 403, "only the lakehouse"),
    ("SELECT * FROM read_text('{home}/mlflow/mlflow.db')", 403, "only the lakehouse"),
    ("SELECT * FROM glob('/*')", 403, "only the lakehouse"),
    ("SELECT * FROM range(100000)", 413, "more than 1,000 rows"),
    ("SELECT count(*) FROM range(1000000000000) a", 408, "time limit"),
    ("SELECT * FROM no_such_table", 400, "no_such_table"),
    ("SELEC 1", 400, "parse"),
]


@pytest.mark.parametrize(("query", "status", "message"), SANDBOX_CORPUS)
def test_the_sql_sandbox_refuses_with_a_4xx_and_stays_healthy(
    client, lake_home, query, status, message
) -> None:
    sql = query.format(lake=lake_home / "lakehouse" / "data", home=lake_home)
    answer = client.post("/sql", json={"query": sql})
    error = error_of(answer, status)
    assert message in error["message"]
    assert error["code"] in (
        "sql_refused",
        "outside_lake",
        "result_too_large",
        "sql_timeout",
        "sql_error",
    )
    assert client.get("/readyz").status_code == 200
    ok = client.post("/sql", json={"query": "SELECT count(*) FROM events"})
    assert ok.status_code == 200
    assert not (lake_home / "lakehouse" / "data" / "evil.parquet").exists()


def test_the_same_key_and_body_limit_as_scoring(reader) -> None:
    with reader.client() as anonymous:
        assert anonymous.post("/sql", json={"query": "SELECT 1"}).status_code == 401
        assert anonymous.get("/report").status_code == 401
        assert anonymous.get("/readyz").status_code == 200
    with reader.client(headers={"X-API-Key": API_KEY}) as client:
        huge = client.post("/sql", content=b'{"query": "' + b"x" * 2_000_000 + b'"}')
        assert huge.status_code == 413


def test_errors_have_the_one_shape(reader, client) -> None:
    """The read API's own errors, BentoML's validation errors and the guard's answers: one
    shape with a code, as the scoring service's (tests/serving/test_errors.py)."""
    unknown = error_of(client.post("/customer", json={"customer_id": "nobody"}), 404)
    assert unknown["code"] == "unknown_customer" and "nobody" in unknown["message"]
    inverted = {"window": "day", "first_day": "2024-02-01", "last_day": "2024-01-01"}
    assert error_of(client.post("/kpis", json=inverted), 400)["code"] == "invalid_range"
    long = {"window": "hour", "first_day": "2020-01-01", "last_day": "2024-01-01"}
    assert error_of(client.post("/kpis", json=long), 400)["code"] == "range_too_long"
    invalid = error_of(client.post("/audit", json={"lens": "horoscope"}), 400)
    assert invalid["code"] == "invalid_request" and invalid["detail"][0]["loc"]
    assert error_of(client.post("/nowhere", json={}), 404)["code"] == "not_found"
    with reader.client() as anonymous:
        assert error_of(anonymous.post("/kpis", json=long), 401)["code"] == "unauthorized"


def test_openapi_lists_the_typed_endpoints(client) -> None:
    spec = client.get("/docs.json").json()
    for route in ("/kpis", "/audit", "/customer", "/sql", "/tables"):
        assert route in spec["paths"], route
    assert "KpiResponse" in str(spec) and "SqlResult" in str(spec)
    error = {"$ref": "#/components/schemas/ErrorResponse"}
    assert spec["paths"]["/sql"]["post"]["responses"]["400"]["content"]["application/json"] == {
        "schema": error
    }


def test_the_report_is_served(client) -> None:
    page = client.get("/report", follow_redirects=True)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text.count("data:image/png;base64,") == 5


def test_the_bento_requirements_are_the_lock() -> None:
    lock = tomllib.loads((settings.REPO_ROOT / "uv.lock").read_text())
    versions = {p["name"]: p["version"] for p in lock["package"]}
    for line in (READER_DIR / "requirements.txt").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        name, version = line.split("==")
        assert versions[name.split("[")[0]] == version, line


def test_customer_daily_is_sorted_by_customer_for_profile_reads(lake_home) -> None:
    """The files a profile reads are sorted by customer in small row groups (set when the table
    was made; a lakehouse made before gets it from the maintenance job)."""
    rows = lake_sql(
        lake_home,
        "SELECT value FROM lake.options() WHERE option_name = 'parquet_row_group_size' "
        "AND scope_entry = 'main.customer_daily'",
    )
    assert rows == [(str(lakehouse.SORTED["customer_daily"][1]),)]
    ordered = lake_sql(
        lake_home,
        "SELECT count(*) FROM (SELECT customer_id, lag(customer_id) OVER () AS before "
        "FROM customer_daily WHERE day = DATE '2024-02-01') WHERE customer_id < before",
    )
    assert ordered == [(0,)]
