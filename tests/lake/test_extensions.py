"""DuckLake's extensions come from the PyPI wheels, with no download: linked under the names
DuckDB loads, loaded with DuckDB's signature check when asked, and from the virtual
environment's private directory without it (uv checked the wheels' hashes)."""

from __future__ import annotations

import duckdb

from analytics_assets.lib import duckdb_extensions


def test_the_wheels_binaries_load_signed_offline(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ANALYTICS_DUCKDB_EXTENSIONS", str(tmp_path))
    config = duckdb_extensions.config()
    assert config["allow_unsigned_extensions"] is False  # another directory: DuckDB verifies
    placed = sorted(p.name for p in tmp_path.rglob("*.duckdb_extension"))
    assert placed == [
        "ducklake.duckdb_extension",
        "postgres_scanner.duckdb_extension",
        "sqlite_scanner.duckdb_extension",
    ]
    with duckdb.connect(config=config) as conn:
        for name in ("ducklake", "sqlite_scanner", "postgres_scanner"):
            conn.execute(f"LOAD {name}")
        loaded = dict(
            conn.execute(
                "SELECT extension_name, install_path FROM duckdb_extensions() WHERE loaded"
            ).fetchall()
        )
    assert str(tmp_path) in loaded["ducklake"]


def test_the_private_directory_skips_the_second_check(monkeypatch) -> None:
    monkeypatch.delenv("ANALYTICS_DUCKDB_EXTENSIONS", raising=False)
    monkeypatch.delenv("ANALYTICS_DUCKDB_VERIFY_EXTENSIONS", raising=False)
    assert duckdb_extensions.directory() == duckdb_extensions.private_directory()
    assert duckdb_extensions.config()["allow_unsigned_extensions"] is True
    monkeypatch.setenv("ANALYTICS_DUCKDB_VERIFY_EXTENSIONS", "1")
    assert duckdb_extensions.config()["allow_unsigned_extensions"] is False
