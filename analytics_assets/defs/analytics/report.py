"""The customer-base audit as one HTML page a person opens: the five lenses' plots and tables.

One self-contained file (plots embedded as PNG data URIs, no script, no external resource), so
it reads the same from disk, from the read API (``GET /report``) or attached to a mail.
"""

from __future__ import annotations

import base64
import html
from datetime import UTC, datetime

import polars as pl

from analytics_assets.defs.analytics.audit import Audit

FILE = "index.html"

LENS_TITLES = {
    "lens1_single_period": (
        "1. The latest period",
        "How many orders customers placed, how revenue splits by decile, and how concentrated "
        "it is (Lorenz curve).",
        "summary",
    ),
    "lens2_period_comparison": (
        "2. Period over period",
        "New, retained, reactivated and lapsed customers, and the revenue bridge between periods.",
        "period_comparison",
    ),
    "lens3_cohort_evolution": (
        "3. One cohort over time",
        "The share of the first cohort still active, and its revenue, period by period.",
        "cohort_evolution",
    ),
    "lens4_cohort_comparison": (
        "4. Cohorts compared",
        "Retention of every cohort by periods since acquisition.",
        "cohort_comparison",
    ),
    "lens5_layer_cake": (
        "5. Revenue by acquisition cohort",
        "Each period's revenue stacked by the cohort it came from (the layer cake).",
        "layer_cake",
    ),
}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #222; }
h1 { margin-bottom: 0.2rem; } .meta { color: #666; margin-top: 0; }
section { margin: 2.5rem 0; } img { max-width: 100%; border: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85rem; margin-top: 0.8rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: right; }
th { background: #f3f3f3; } caption { text-align: left; color: #666; padding: 0.3rem 0; }
"""


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 1 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return html.escape(str(value))


def table_html(frame: pl.DataFrame, caption: str, rows: int = 24) -> str:
    """``frame``'s last ``rows`` rows as an HTML table (the latest periods matter most)."""
    shown = frame.tail(rows)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in shown.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in shown.iter_rows()
    )
    more = f" (the last {rows} of {frame.height} rows)" if frame.height > rows else ""
    return (
        f"<table><caption>{html.escape(caption)}{more}</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def render(result: Audit, images: dict[str, bytes], period: str, customers: int) -> str:
    """The page: a header, then per lens its plot and its table."""
    tables = result.tables()
    sections = []
    for name, (title, text, table) in LENS_TITLES.items():
        image = images.get(name)
        img = (
            f'<img alt="{html.escape(title)}" src="data:image/png;base64,'
            f'{base64.b64encode(image).decode()}">'
            if image
            else "<p><em>no plot</em></p>"
        )
        frame = tables[f"audit_{table}"]
        sections.append(
            f'<section id="{name}"><h2>{html.escape(title)}</h2><p>{html.escape(text)}</p>'
            f"{img}{table_html(frame, f'table audit_{table}')}</section>"
        )
    written = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    periods = result.summary.height
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<title>Customer-base audit</title>"
        f"<style>{STYLE}</style></head><body>"
        "<h1>Customer-base audit</h1>"
        f'<p class="meta">{customers:,} purchasing customers, {periods} periods of one {period}; '
        f"written {written}. Tables <code>audit_*</code> in the lake and the warehouse.</p>"
        + "".join(sections)
        + "</body></html>"
    )
