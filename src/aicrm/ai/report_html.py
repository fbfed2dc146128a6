"""The conversion analysis as one self-contained HTML page for a sales manager.

Charts are drawn by matplotlib (Agg backend, no display needed) and embedded as
base64 PNG ``<img>`` tags; the styles are inline. The file needs nothing else:
mail it, open it offline.
"""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any

from aicrm.ai.analysis import Report

BLUE = "#2f6db5"
GREY = "#9aa5b1"
RED = "#c0392b"

STYLE = """
body { font-family: -apple-system, 'Segoe UI', 'DejaVu Sans', Arial, sans-serif; margin: 0;
       color: #1f2933; background: #f5f7fa; }
header { background: #1f3a5f; color: white; padding: 24px 40px; }
header h1 { margin: 0 0 6px 0; font-size: 26px; }
header p { margin: 0; opacity: .85; }
main { padding: 24px 40px; max-width: 1200px; }
section { background: white; border-radius: 8px; padding: 18px 24px; margin-bottom: 20px;
          box-shadow: 0 1px 3px rgba(0,0,0,.08); }
h2 { font-size: 19px; margin: 0 0 12px 0; color: #1f3a5f; }
.kpis { display: flex; gap: 16px; flex-wrap: wrap; }
.kpi { flex: 1; min-width: 160px; background: #eef3f9; border-radius: 8px; padding: 12px 16px; }
.kpi .v { font-size: 26px; font-weight: 600; color: #1f3a5f; }
.kpi .l { font-size: 13px; color: #52606d; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 20px; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { text-align: right; padding: 5px 8px; border-bottom: 1px solid #e4e7eb; }
th:first-child, td:first-child { text-align: left; }
th { background: #f0f4f8; font-weight: 600; }
img { max-width: 100%; }
ul { margin: 6px 0; padding-left: 20px; } li { margin: 4px 0; }
.muted { color: #616e7c; font-size: 13px; }
.up { color: #1e7b34; } .down { color: #c0392b; }
"""


def render(report: Report) -> str:
    data = report.to_dict()
    overall = data["overall"]
    converted = sum(r["converted"] for r in data["by_source"])
    best = max(
        (r for r in data["by_source"] if r["leads"] >= 20), key=lambda r: r["rate"], default=None
    )
    median_all = _median_time(data)
    kpis = [
        (f"{overall['rate']:.1%}", f"converted within {data['horizon_days']} days"),
        (f"{overall['ci_low']:.1%} – {overall['ci_high']:.1%}", "95 % interval"),
        (f"{data['labelled']:,}", f"leads judged ({converted:,} converted)"),
        (f"{median_all}", "median days to convert"),
        (f"{best['segment']}" if best else "–", "best source"),
    ]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>Conversion analysis</title>",
        f"<style>{STYLE}</style></head><body>",
        "<header><h1>Conversion analysis</h1>",
        f"<p>{data['leads']:,} leads as of {html.escape(data['as_of'][:10])}; a lead is judged "
        f"{data['horizon_days']} days after its creation.</p></header><main>",
        "<section><div class='kpis'>",
        *(
            f"<div class='kpi'><div class='v'>{html.escape(v)}</div>"
            f"<div class='l'>{html.escape(label)}</div></div>"
            for v, label in kpis
        ),
        "</div>",
        *(f"<p class='muted'>{html.escape(n)}</p>" for n in data["notes"]),
        "</section>",
        "<section><h2>What drives conversion</h2>",
        f"<p class='muted'>From {html.escape(data['drivers']['source'])}.</p><ul>",
        *(f"<li>{html.escape(s)}</li>" for s in data["drivers"]["sentences"]),
        "</ul></section>",
        "<section><h2>What changed recently</h2><ul>",
        *(
            [f"<li>{_change(s)}</li>" for s in data["changes"]["segments"]]
            or ["<li>No source or industry converts significantly differently lately.</li>"]
        ),
        f"</ul><p class='muted'>{html.escape(data['changes']['test'])}.</p></section>",
        "<div class='grid'>",
        _chart_section("Conversion by source", _rate_chart(data["by_source"]), data["by_source"]),
        _chart_section(
            "Conversion by industry", _rate_chart(data["by_industry"]), data["by_industry"]
        ),
        "</div>",
        "<section><h2>Monthly cohorts</h2>",
        _img(_cohort_chart(data["by_cohort"])),
        "</section>",
        "<section><h2>The funnel</h2>",
        _img(_funnel_chart(data["funnel"])),
        _funnel_table(data["funnel"]),
        "</section>",
        "<p class='muted'>Made by aicrm analyze conversions. Rates: converted within the "
        "horizon / leads judged, with 95 % Wilson intervals (the bars' whiskers).</p>",
        "</main></body></html>",
    ]
    return "\n".join(parts)


def _median_time(data: dict[str, Any]) -> str:
    values = [
        (r["median_days"], r["converted"])
        for r in data["by_source"]
        if r["median_days"] is not None
    ]
    if not values:
        return "–"
    total = sum(n for _m, n in values)
    return f"{sum(m * n for m, n in values) / total:.0f}" if total else "–"


def _change(row: dict[str, Any]) -> str:
    arrow = "up" if row["recent_rate"] > row["past_rate"] else "down"
    symbol = "▲" if arrow == "up" else "▼"
    return f"<span class='{arrow}'>{symbol}</span> {html.escape(row['sentence'])}"


def _chart_section(title: str, chart: bytes, rows: list[dict[str, Any]]) -> str:
    body = "".join(
        f"<tr><td>{html.escape(str(r['segment']))}</td><td>{r['leads']:,}</td>"
        f"<td>{r['rate']:.1%}</td><td>{r['ci_low']:.1%} – {r['ci_high']:.1%}</td>"
        f"<td>{_days(r['median_days'])}</td><td>{_days(r['p90_days'])}</td></tr>"
        for r in rows
    )
    return (
        f"<section><h2>{html.escape(title)}</h2>{_img(chart)}<table><tr><th></th><th>leads</th>"
        f"<th>rate</th><th>95 % CI</th><th>median days</th><th>p90 days</th></tr>{body}"
        "</table></section>"
    )


def _funnel_table(rows: list[dict[str, Any]]) -> str:
    body = "".join(
        f"<tr><td>{r['stage']}</td><td>{r['reached']:,}</td><td>{_pct(r['share_of_previous'])}</td>"
        f"<td>{_pct(r['drop_off'])}</td><td>{_days(r['median_days'])}</td></tr>"
        for r in rows
    )
    return (
        "<table><tr><th>stage</th><th>reached</th><th>of previous stage</th>"
        f"<th>drop-off after</th><th>median days in stage</th></tr>{body}</table>"
    )


def _days(value: Any) -> str:
    return "–" if value is None else f"{value:.0f}"


def _pct(value: Any) -> str:
    return "–" if value is None else f"{value:.1%}"


def _img(png: bytes) -> str:
    if not png:
        return "<p class='muted'>Not enough data for a chart.</p>"
    return f"<img alt='chart' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def _figure(width: float, height: float) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    return figure


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _rate_chart(rows: list[dict[str, Any]]) -> bytes:
    rows = [r for r in rows if r["leads"] > 0][:12]
    if not rows:
        return b""
    figure = _figure(5.6, 0.42 * len(rows) + 1.0)
    ax = figure.add_subplot()
    names = [str(r["segment"]) for r in rows][::-1]
    rates = [r["rate"] * 100 for r in rows][::-1]
    low = [max(0.0, (r["rate"] - r["ci_low"]) * 100) for r in rows][::-1]
    high = [max(0.0, (r["ci_high"] - r["rate"]) * 100) for r in rows][::-1]
    ax.barh(names, rates, xerr=[low, high], color=BLUE, ecolor="#333", capsize=3)
    ax.set_xlabel("converted within the horizon (%)")
    ax.spines[["top", "right"]].set_visible(False)
    return _png(figure)


def _cohort_chart(rows: list[dict[str, Any]]) -> bytes:
    rows = [r for r in rows if r["leads"] > 0]
    if not rows:
        return b""
    figure = _figure(11, 3.4)
    ax = figure.add_subplot()
    x = list(range(len(rows)))
    rate = [r["rate"] * 100 for r in rows]
    ax.fill_between(x, [r["ci_low"] * 100 for r in rows], [r["ci_high"] * 100 for r in rows],
                    color=BLUE, alpha=0.18, label="95 % interval")  # fmt: skip
    ax.plot(x, rate, color=BLUE, marker="o", label="conversion rate")
    ax.set_ylabel("converted (%)")
    step = max(1, math.ceil(len(rows) / 12))
    ax.set_xticks(x[::step], [r["segment"] for r in rows][::step], rotation=0)
    twin = ax.twinx()
    twin.bar(x, [r["leads"] for r in rows], color=GREY, alpha=0.25, label="leads")
    twin.set_ylabel("leads created")
    ax.set_zorder(twin.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.legend(loc="upper left", frameon=False)
    ax.spines[["top"]].set_visible(False)
    return _png(figure)


def _funnel_chart(rows: list[dict[str, Any]]) -> bytes:
    if not rows or not rows[0]["reached"]:
        return b""
    figure = _figure(11, 2.8)
    ax = figure.add_subplot()
    names = [r["stage"] for r in rows][::-1]
    reached = [r["reached"] for r in rows][::-1]
    bars = ax.barh(names, reached, color=[BLUE, BLUE, BLUE, "#1e7b34"][::-1])
    top = rows[0]["reached"]
    for bar, n in zip(bars, reached, strict=True):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                f"  {n:,} ({n / top:.0%})", va="center")  # fmt: skip
    ax.set_xlim(0, top * 1.18)
    ax.set_xlabel("leads that reached the stage")
    ax.spines[["top", "right"]].set_visible(False)
    return _png(figure)
