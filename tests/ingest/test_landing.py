import os
from pathlib import Path

import pytest

from analytics_assets.defs.ingest.landing import (
    LandedFile,
    Refused,
    batch_id_for,
    find_batch_file,
    is_temporary,
    scan,
)
from analytics_assets.lib.atomic_files import write_atomic


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("2024-01-01.jsonl", "2024-01-01"),
        ("sim-7-000001.parquet", "sim-7-000001"),
        ("b1.jsonl.gz", "b1"),
        ("B1.JSONL", "B1"),
        ("notes.txt", None),
        (".b1.jsonl.tmp", None),
        ("b1.jsonl.part", None),
        (".jsonl", None),
    ],
)
def test_batch_id_for_plain_names(name: str, expected: str | None) -> None:
    assert batch_id_for(name) == expected


@pytest.mark.parametrize(
    "name",
    [
        "events 2024-01-01.jsonl",
        "x'; DROP TABLE events; --.jsonl",
        "ünïcødé.jsonl",
        "a..b.jsonl",
        "-leading-dash.jsonl",
        "a" * 300 + ".jsonl",
    ],
)
def test_odd_names_get_a_safe_hashed_id(name: str) -> None:
    batch_id = batch_id_for(name)
    assert batch_id is not None
    assert all(c.isalnum() or c in "-_" for c in batch_id)
    assert len(batch_id) <= 53
    assert batch_id == batch_id_for(name)  # deterministic
    assert batch_id != batch_id_for(name.replace(".jsonl", "2.jsonl"))


def test_temporary_names() -> None:
    assert is_temporary(".hidden.jsonl")
    assert is_temporary("b.jsonl.tmp")
    assert not is_temporary("b.jsonl")


def test_scan_refuses_symlinks_and_skips_dirs(tmp_path: Path) -> None:
    root = tmp_path / "landing"
    root.mkdir()
    (root / "good.jsonl").write_text("{}\n")
    (root / ".good2.jsonl.tmp").write_text("{}\n")
    (root / "sub").mkdir()
    outside = tmp_path / "secret.jsonl"
    outside.write_text("{}\n")
    (root / "link.jsonl").symlink_to(outside)
    (root / "readme.md").write_text("hi")
    items = list(scan(root))
    landed = [i for i in items if isinstance(i, LandedFile)]
    refused = {i.name: i.reason for i in items if isinstance(i, Refused)}
    assert [f.batch_id for f in landed] == ["good"]
    assert "symbolic" in refused["link.jsonl"]
    assert "not a batch file" in refused["readme.md"]


def test_find_batch_file_by_hashed_id(tmp_path: Path) -> None:
    (tmp_path / "odd name.jsonl").write_text("{}\n")
    batch_id = batch_id_for("odd name.jsonl")
    assert find_batch_file(tmp_path, batch_id) == tmp_path / "odd name.jsonl"
    assert find_batch_file(tmp_path, "missing") is None


def test_write_atomic_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = write_atomic(tmp_path / "landing", "b.jsonl", b"{}\n")
    assert path.read_bytes() == b"{}\n"
    assert os.listdir(tmp_path / "landing") == ["b.jsonl"]
