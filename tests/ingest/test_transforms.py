import gzip
import io
from pathlib import Path

import polars as pl
import pytest

from analytics_assets.defs.ingest.parsing import UnreadableFileError, parse_batch
from analytics_assets.defs.ingest.schema import EVENT_COLUMNS, Reason, event_schema
from analytics_assets.defs.ingest.validation import validate_batch
from tests.conftest import event, jsonl, purchase


def run(records: list, name: str = "b.jsonl"):
    return validate_batch(parse_batch(jsonl(records), name))


def reasons(result) -> dict[int, str]:
    return dict(result.quarantined.select("record_number", "reason").iter_rows())


def test_clean_batch_passes_whole() -> None:
    result = run([event(1), purchase(2), event(3, event_type="search")])
    assert result.clean.height == 3
    assert result.quarantined.height == 0
    event_schema().validate(result.clean.select(EVENT_COLUMNS))
    assert result.clean.schema["occurred_at"] == pl.Datetime("us", "UTC")


def exposure(n: int, experiment: str | None = "green_button", variant: str | None = "green"):
    fields = {"experiment": experiment, "variant": variant}
    return event(
        n,
        event_type="experiment_exposure",
        properties={k: v for k, v in fields.items() if v is not None},
    )


def test_an_exposure_naming_its_experiment_and_variant_is_clean() -> None:
    result = run([exposure(1), exposure(2, experiment="a.b-1", variant="control")])
    assert result.quarantined.height == 0
    assert result.clean["event_type"].to_list() == ["experiment_exposure"] * 2


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ('{"event_id": "x", broken', Reason.UNPARSEABLE_LINE),
        ("[1, 2, 3]", Reason.UNPARSEABLE_LINE),
        (event(9, customer_id=None), Reason.MISSING_REQUIRED_FIELD),
        ({k: v for k, v in event(9).items() if k != "event_id"}, Reason.MISSING_REQUIRED_FIELD),
        (event(9, customer_id="   "), Reason.MISSING_REQUIRED_FIELD),
        (purchase(9, amount=None), Reason.MISSING_REQUIRED_FIELD),
        (event(9, quantity="lots"), Reason.WRONG_TYPE),
        (event(9, quantity=1.5), Reason.WRONG_TYPE),
        (purchase(9, amount="ten"), Reason.WRONG_TYPE),
        (event(9, occurred_at="yesterday"), Reason.WRONG_TYPE),
        (event(9, event_type="teleport"), Reason.UNKNOWN_EVENT_TYPE),
        (purchase(9, amount=-5), Reason.NEGATIVE_VALUE),
        (event(9, quantity=-1), Reason.NEGATIVE_VALUE),
        (event(9, occurred_at="2999-01-01T00:00:00Z"), Reason.IMPLAUSIBLE_TIMESTAMP),
        (event(9, occurred_at="1970-01-01T00:00:00Z"), Reason.IMPLAUSIBLE_TIMESTAMP),
        (purchase(9, currency="DOLLARS"), Reason.INVALID_VALUE),
        (event(9, event_type="experiment_exposure"), Reason.INVALID_EXPOSURE),
        (exposure(9, variant=None), Reason.INVALID_EXPOSURE),
        (exposure(9, experiment="has space"), Reason.INVALID_EXPOSURE),
        (
            event(9, event_type="experiment_exposure", properties="not json"),
            Reason.INVALID_EXPOSURE,
        ),
    ],
)
def test_each_bad_row_is_quarantined_with_its_reason(record, reason: str) -> None:
    result = run([event(1), record, event(3)])
    assert result.clean["event_id"].to_list() == ["e1", "e3"]
    assert reasons(result) == {2: reason}
    assert result.quarantined["raw"][0]
    assert result.quarantined["detail"][0]


def test_duplicates_in_batch_keep_the_first_valid_occurrence() -> None:
    result = run([event(1, event_type="bogus"), event(1), event(1), event(2)])
    assert result.clean["event_id"].to_list() == ["e1", "e2"]
    assert reasons(result) == {1: Reason.UNKNOWN_EVENT_TYPE, 3: Reason.DUPLICATE_IN_BATCH}
    assert result.clean["record_number"].to_list() == [2, 4]


def test_cleaning_normalizes_near_misses() -> None:
    result = run([purchase(1, event_type=" Purchase ", currency="usd", device="Mobile")])
    row = result.clean.row(0, named=True)
    assert (row["event_type"], row["currency"], row["device"]) == ("purchase", "USD", "mobile")


def test_timestamps_are_converted_to_utc() -> None:
    result = run(
        [
            event(1, occurred_at="2024-03-01T12:00:00+02:00"),
            event(2, occurred_at="2024-03-01 10:00:00"),
            event(3, occurred_at="2024-03-01T10:00:00.250Z"),
        ]
    )
    hours = result.clean["occurred_at"].dt.hour().to_list()
    assert hours == [10, 10, 10]


def test_properties_objects_are_kept_as_json_text() -> None:
    result = run([event(1, properties={"a": [1, 2], "b": "x"})])
    assert result.clean["properties"][0].replace(" ", "") == '{"a":[1,2],"b":"x"}'


def test_blank_lines_keep_line_numbers() -> None:
    data = jsonl([event(1)]) + b"\n\n" + jsonl([event(2, event_type="nope")])
    result = validate_batch(parse_batch(data, "b.jsonl"))
    assert reasons(result) == {4: Reason.UNKNOWN_EVENT_TYPE}


def test_every_row_lands_in_exactly_one_place() -> None:
    records = [event(i) for i in range(50)] + ["garbage"] * 3 + [event(i) for i in range(10)]
    records += [event(100 + i, event_type="x") for i in range(5)]
    raw = parse_batch(jsonl(records), "b.jsonl")
    result = validate_batch(raw)
    assert raw.records == len(records)
    assert result.clean.height + result.quarantined.height == len(records)
    assert result.clean["event_id"].n_unique() == result.clean.height


def test_gzip_and_parquet_are_read() -> None:
    records = [event(1), purchase(2)]
    gz = validate_batch(parse_batch(gzip.compress(jsonl(records)), "b.jsonl.gz"))
    assert gz.clean.height == 2
    frame = run(records).clean.drop("record_number")
    buffer = io.BytesIO()
    frame.with_columns(extra=pl.lit(1)).write_parquet(buffer)
    pq = parse_batch(buffer.getvalue(), "b.parquet")
    assert pq.extra_columns == ["extra"]
    assert validate_batch(pq).clean.drop("record_number").equals(frame)


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("b.jsonl", b"", "empty"),
        ("b.jsonl", b"\n\n  \n", "empty"),
        ("b.jsonl", "é".encode("latin-1") * 50 + b"\n", "not UTF-8"),
        ("b.jsonl", b"hello world\nthis is not json\n", "not JSON lines"),
        ("b.jsonl.gz", gzip.compress(jsonl([event(1)] * 20))[:-15], "gzip"),
        ("b.jsonl.gz", b"definitely not gzip", "gzip"),
        ("b.parquet", b"PAR1 nope", "Parquet"),
    ],
)
def test_unreadable_files_raise_with_a_reason(name: str, data: bytes, message: str) -> None:
    with pytest.raises(UnreadableFileError, match=message):
        parse_batch(data, name)


def test_fixture_corpus_file(tmp_path: Path) -> None:
    path = tmp_path / "b.jsonl"
    path.write_bytes(jsonl([event(1), "{oops", purchase(3, amount=-1)]))
    from analytics_assets.defs.ingest.parsing import read_batch

    result = validate_batch(read_batch(path))
    assert result.clean.height == 1
    assert sorted(reasons(result).values()) == [Reason.NEGATIVE_VALUE, Reason.UNPARSEABLE_LINE]


def test_padded_timestamps_are_accepted() -> None:
    result = run([event(1, occurred_at="  2024-03-01T10:00:00Z "), event(2, occurred_at=" ")])
    assert result.clean["event_id"].to_list() == ["e1"]
    assert reasons(result) == {2: Reason.WRONG_TYPE}
