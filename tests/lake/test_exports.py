"""Exports for real: ``GET /export/{table}`` on the read API (``bentoml serve``) and ``analytics
export``, each format read back by another reader (polars, pyarrow, Python's ``csv``) and equal
to ``analytics sql`` over the same range; bad input; clients that leave mid-stream."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from datetime import UTC, date, datetime

import httpx
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analytics_assets.lib import exports, lake, lakehouse
from tests.lake.conftest import API_KEY, FIRST_DAY
from tests.serving.conftest import error_of

pytestmark = pytest.mark.timeout(300)

FIRST, LAST = date(2024, 1, 10), date(2024, 2, 20)
COLUMNS = ("event_id", "customer_id", "event_type", "occurred_at", "amount")


def cli(home, *args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "ANALYTICS_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "analytics_assets.cli", *args],
        env=env,
        capture_output=True,
        check=False,
        **kwargs,
    )


def canonical(rows) -> list[tuple]:
    """(event id, customer, type, occurred_at as UTC microseconds, amount) per row, sorted."""
    out = []
    for row in rows:
        moment = row["occurred_at"]
        if isinstance(moment, str):
            moment = datetime.fromisoformat(moment.replace("+0000", "+00:00"))
        amount = row["amount"]
        amount = None if amount in (None, "") else round(float(amount), 6)
        stamp = int(moment.astimezone(UTC).timestamp() * 1e6)
        out.append((row["event_id"], row["customer_id"], row["event_type"], stamp, amount))
    return sorted(out)


@pytest.fixture(scope="module")
def expected(lake_home) -> list[tuple]:
    """The range's events as ``analytics sql`` prints them (JSON)."""
    query = (
        f"SELECT {', '.join(COLUMNS)} FROM events WHERE occurred_at >= TIMESTAMPTZ '{FIRST}' "
        f"AND occurred_at < TIMESTAMPTZ '{LAST}' + INTERVAL 1 DAY"
    )
    done = cli(lake_home, "sql", "--format", "json", query)
    assert done.returncode == 0, done.stderr.decode()
    rows = canonical(json.loads(done.stdout))
    assert len(rows) > 1000
    return rows


def read_back(fmt: str, data: bytes) -> list[dict]:
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(data.decode())))
    if fmt == "json":
        return pl.read_ndjson(io.BytesIO(data)).to_dicts()
    if fmt == "parquet":
        return pq.read_table(pa.BufferReader(data)).to_pylist()
    return pa.ipc.open_stream(data).read_all().to_pylist()


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet", "arrow"])
def test_each_format_reads_back_equal_to_analytics_sql(reader, expected, fmt) -> None:
    with reader.client(headers={"X-API-Key": API_KEY}) as client:
        answer = client.get(
            "/export/events", params={"first_day": FIRST, "last_day": LAST, "format": fmt}
        )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith(exports.MEDIA_TYPES[fmt].split(";")[0])
    assert int(answer.headers["x-row-count"]) == len(expected)
    assert answer.headers["x-lakehouse-snapshot"].isdigit()
    assert canonical(read_back(fmt, answer.content)) == expected


def test_the_cli_writes_the_same_rows(lake_home, expected, tmp_path) -> None:
    out = tmp_path / "events.parquet"
    done = cli(
        lake_home, "export", "events", "--from", str(FIRST), "--to", str(LAST),
        "--format", "parquet", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert f"{len(expected):,} rows of events" in done.stderr.decode()
    assert canonical(pq.read_table(out).to_pylist()) == expected
    done = cli(lake_home, "export", "sessions", "--from", FIRST_DAY, "--to", FIRST_DAY)
    assert done.returncode == 0 and done.stdout.startswith(b"session_id,")
    bad = cli(lake_home, "export", "evnts", "--from", str(FIRST), "--to", str(LAST))
    assert bad.returncode == 1 and b"no table 'evnts' to export" in bad.stderr
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/export/nope", {}, 404, "unknown_table"),
        ("/export/events", {"first_day": "2024-03-01"}, 400, "invalid_range"),
        ("/export/events", {"first_day": "2020-01-01", "last_day": "2024-01-01"}, 400,
         "range_too_long"),
        ("/export/events", {"format": "xml"}, 400, "invalid_request"),
        ("/export/events", {"first_day": "yesterday"}, 400, "invalid_request"),
    ],
)  # fmt: skip
def test_bad_requests_get_a_4xx_with_a_message(reader, path, params, status, code) -> None:
    query = {"first_day": "2024-01-01", "last_day": "2024-01-02", **params}
    with reader.client(headers={"X-API-Key": API_KEY}) as client:
        answer = client.get(path, params=query)
    error = error_of(answer, status)
    assert error["code"] == code and error["message"]


def test_keys_and_roles(reader, role_keys) -> None:
    query = {"first_day": FIRST, "last_day": FIRST}
    with reader.client() as client:
        assert client.get("/export/events", params=query).status_code == 401
        scorer = client.get(
            "/export/events", params=query, headers={"X-API-Key": role_keys["scorer"]}
        )
        assert "analyst" in error_of(scorer, 403)["message"]
        analyst = client.get(
            "/export/events", params=query, headers={"X-API-Key": role_keys["analyst"]}
        )
        assert analyst.status_code == 200
        assert client.get("/live", headers={"X-API-Key": role_keys["scorer"]}).status_code == 403
        page = client.get("/dashboard")  # a page with no data: no key needed
        assert page.status_code == 200 and '<span id="snapshot">–</span>' in page.text
        paths = client.get("/docs.json", headers={"X-API-Key": API_KEY}).json()["paths"]
        assert {"/live", "/dashboard", "/export/{table}"} <= set(paths)
        assert "READ_API_EXPORT_MAX_ROWS" in paths["/export/{table}"]["get"]["description"]


def test_the_row_limit_refuses_before_any_byte(lake_home) -> None:
    where = lakehouse.Location.under(lake_home / "lakehouse")
    with lake.connect(where=where) as conn:
        with pytest.raises(exports.ExportError) as refused:
            exports.open_export(conn, "events", FIRST, LAST, "csv", 10, 400, 60)
        assert refused.value.status == 413 and "over the limit of 10" in str(refused.value)


def metric(client: httpx.Client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} on /metrics")


def test_clients_that_leave_mid_stream_free_what_they_held(reader) -> None:
    """Clients that read one chunk of a big export (or one live event) and hang up: nothing
    stays streaming, and the server answers as before."""
    query = {"first_day": FIRST_DAY, "last_day": "2024-04-29", "format": "json"}
    headers = {"X-API-Key": API_KEY}
    with reader.client(headers=headers) as client:
        for _ in range(40):
            with client.stream("GET", "/export/events", params=query) as answer:
                assert answer.status_code == 200
                next(answer.iter_raw())
            with client.stream("GET", "/live") as answer:
                assert answer.status_code == 200
                next(answer.iter_raw())
        deadline = time.monotonic() + 10
        while metric(client, "analytics_reader_exports_streaming") or metric(
            client, "analytics_reader_live_subscribers"
        ):
            assert time.monotonic() < deadline, "streams stayed open after their clients left"
            time.sleep(0.2)
        whole = client.get("/export/events", params=query)
        assert whole.status_code == 200
        assert len(whole.content.splitlines()) == int(whole.headers["x-row-count"])
