"""The experiments as one HTML page in the audit report's style: per experiment the verdict and
its reason, the plot of lift over time and the newest look's table."""

from __future__ import annotations

import base64
import html
from datetime import UTC, datetime

import polars as pl

from analytics_assets.defs.analytics.report import STYLE, table_html

FILE = "index.html"
COLUMNS = (
    "variant", "metric", "customers", "mean", "diff", "ci_low", "ci_high", "p_value", "lift",
    "lift_low", "lift_high", "cuped_diff", "cuped_low", "cuped_high", "cuped_variance_ratio",
    "seq_low", "seq_high",
)  # fmt: skip


def render(verdicts: pl.DataFrame, looks: pl.DataFrame, images: dict[str, bytes]) -> str:
    """``verdicts``: each experiment's newest verdict row; ``looks``: the newest look's rows."""
    sections = []
    for v in verdicts.sort("experiment").iter_rows(named=True) if verdicts.height else []:
        name = v["experiment"]
        image = images.get(name)
        img = (
            f'<img alt="{html.escape(name)}" src="data:image/png;base64,'
            f'{base64.b64encode(image).decode()}">'
            if image
            else ""
        )
        rows = looks.filter(pl.col("experiment") == name)
        table = (
            table_html(rows.select(COLUMNS), f"look of {v['day']}", rows=60) if rows.height else ""
        )
        checks = (
            f"sample ratio p = {v['srm_p_value']:.3g}, crossovers {v['crossovers'] or 0:,}, "
            f"exposures to unknown variants {v['unknown_variant_customers'] or 0:,}, "
            f"day {v['days_running']} of {v['horizon_days']}"
            if v["srm_p_value"] is not None
            else ""
        )
        sections.append(
            f'<section id="{html.escape(name)}"><h2>{html.escape(name)}: '
            f"{html.escape(v['verdict'].replace('_', ' '))}</h2>"
            f"<p>{html.escape(v['reason'] or '')}</p><p class=meta>{html.escape(checks)}</p>"
            f"{img}{table}</section>"
        )
    written = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>Experiments</title><style>{STYLE}</style></head><body><h1>Experiments</h1>"
        f'<p class="meta">{verdicts.height} experiments; written {written}. Tables '
        "<code>experiment_looks</code> and <code>experiment_verdicts</code> in the lakehouse. "
        "Verdicts read the always-valid intervals, which may be looked at daily.</p>"
        + ("".join(sections) or "<p>No experiment declared or exposed yet.</p>")
        + "</body></html>"
    )
