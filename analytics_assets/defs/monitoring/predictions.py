"""The scoring service's prediction log, read back: what the champion answered, per day."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from analytics_assets.lib.names import CHURN_MODEL, CLV_MODEL

# what each model's answers are compared on: outputs that do not depend on request parameters
# (a CLV request's horizon changes expected purchases and revenue, not P(alive) or spend)
MONITORED_OUTPUTS = {
    CHURN_MODEL: ["churn_probability"],
    CLV_MODEL: ["probability_alive", "expected_average_spend"],
}


def served_predictions(root: Path, model: str, version: str, outputs: list[str]) -> pl.DataFrame:
    """``day`` and ``outputs`` of every answer the champion ``version`` of ``model`` returned
    for a known customer, from all workers' files (``<root>/<model>/date=<day>/*.parquet``)."""
    folder = root / model
    if not any(folder.glob("date=*/*.parquet")):
        return pl.DataFrame(schema={"day": pl.Date, **{o: pl.Float64 for o in outputs}})
    selected = ", ".join(f'CAST("{o}" AS DOUBLE) AS "{o}"' for o in outputs)
    with duckdb.connect() as conn:
        relation = conn.sql(
            f"""
            SELECT CAST(date AS DATE) AS day, {selected}
            FROM read_parquet($glob, hive_partitioning = true, union_by_name = true)
            WHERE role = 'champion' AND served AND known AND model_version = $version
            """,
            params={"glob": str(folder / "date=*" / "*.parquet"), "version": str(version)},
        )
        return pl.from_arrow(relation.to_arrow_table())


def latest_against_earlier(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, str | None]:
    """The answers of the newest logged day, and those of all days before it (the baseline)."""
    if frame.is_empty():
        return frame, frame, None
    newest = frame["day"].max()
    return frame.filter(pl.col("day") < newest), frame.filter(pl.col("day") == newest), str(newest)
