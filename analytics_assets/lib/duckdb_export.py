"""Export every table of a DuckDB file to Parquet: ``python duckdb_export.py DB OUT``.

A script with no import but ``duckdb``, so it runs under another DuckDB version than the
platform's: the warehouse files written before the lakehouse were DuckDB 2.0 files, which the
1.5 line the lakehouse is pinned to cannot open. ``lib/lakehouse_upgrade.py`` runs it with
``uv run --no-project --with duckdb==2.0.0`` for such a file. Writes ``<OUT>/<table>.parquet``
and, last, ``<OUT>/manifest.json`` (``{table: rows}``): no manifest, no complete export.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def export(database: str, out: str) -> dict[str, int]:
    import duckdb

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    with duckdb.connect(database, read_only=True) as conn:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
                "AND schema_name = 'main' AND NOT temporary ORDER BY table_name"
            ).fetchall()
        ]
        for name in names:
            target = str(folder / f"{name}.parquet").replace("'", "''")
            ((rows,),) = conn.execute(
                f"COPY (SELECT * FROM \"{name}\") TO '{target}' (FORMAT parquet)"
            ).fetchall()
            counts[name] = rows
    (folder / "manifest.json").write_text(json.dumps(counts))
    return counts


if __name__ == "__main__":
    sys.stdout.write(json.dumps(export(sys.argv[1], sys.argv[2])) + "\n")
