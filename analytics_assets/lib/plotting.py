"""Matplotlib figures as PNG bytes, and the markdown that shows them in the Dagster UI
(matplotlib is imported only when drawing)."""

from __future__ import annotations

import base64
import io


def figure(rows: int = 1, cols: int = 1, width: float = 7.0, height: float = 4.0):
    """``(pyplot, figure, axes grid)`` on the headless backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(rows, cols, figsize=(width, height), squeeze=False)


def png(plt, fig) -> bytes:
    """The figure as PNG bytes; closes it."""
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def markdown_image(png: bytes, title: str) -> str:
    """Markdown that the Dagster UI renders as the image itself."""
    return f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})"
