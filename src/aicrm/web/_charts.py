"""Bar charts as inline SVG, drawn on the server: no script, no chart library.

Every chart has a ``<title>`` per bar (the browser's tooltip) and an ``aria-label``
that says what it shows, so it reads without the picture too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape


@dataclass(frozen=True)
class Bar:
    """One row of a horizontal chart: the bar is ``value``; ``note`` is printed after it."""

    label: str
    value: float
    note: str = ""


def hbars(
    title: str,
    bars: Sequence[Bar],
    *,
    width: int = 500,
    color: str = "#4f46e5",
    top: float | None = None,
) -> Markup:
    """Horizontal bars, one row per item; a bar of ``top`` (default: the longest) is
    full width."""
    if not bars:
        return Markup('<p class="muted">No data yet.</p>')
    row, label_w, note_w = 30, 120, 100
    track = width - label_w - note_w
    top = top or max(b.value for b in bars) or 1
    height = row * len(bars)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}">'
    ]
    for i, bar in enumerate(bars):
        y = i * row
        length = max(track * bar.value / top, 2 if bar.value else 0)
        label = escape(_clip(bar.label, 20))
        parts.append(
            f"<g><title>{escape(bar.label)}: {escape(bar.note or _num(bar.value))}</title>"
            f'<text x="{label_w - 10}" y="{y + 19}" text-anchor="end" class="chart-label">'
            f"{label}</text>"
            f'<rect x="{label_w}" y="{y + 6}" width="{track}" height="18" rx="4" '
            f'class="chart-track"/>'
            f'<rect x="{label_w}" y="{y + 6}" width="{length:.1f}" height="18" rx="4" '
            f'fill="{color}"/>'
            f'<text x="{label_w + track + 10}" y="{y + 19}" class="chart-value">'
            f"{escape(bar.note or _num(bar.value))}</text></g>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _num(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _clip(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"
