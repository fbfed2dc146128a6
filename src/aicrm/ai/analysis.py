"""Conversion-pattern analysis: rates, time to convert, the funnel, drivers, changes.

Definitions (the same as lead scoring's, so the numbers agree):

* a lead is *judged* once ``horizon`` days have passed since its creation; it
  *converted* when its ``conversion_date`` falls within those days. Rates are
  converted / judged, with 95 % Wilson score intervals;
* *time to convert*: days from creation to conversion, over every converted lead
  of the segment (median and 90th percentile);
* the *funnel* counts judged leads by the furthest stage they reached (new →
  contacted → qualified → converted; a later stage implies the earlier ones), from
  the status history and the current status; time in a stage is the median length
  of its completed periods in ``lead_status_periods``;
* *drivers* come from the active scoring model: each factor's average contribution
  to the log-odds of leads at their creation, in words; with no model, from the
  rates by source;
* *changes*: for each source and industry, the rate of the leads judged most
  recently (created in the ``recent_days`` before the last judged day) against the
  rate of the earlier ones, by a two-sided two-proportion z-test (Fisher's exact
  test when an expected count is below 5), with Benjamini–Hochberg correction across
  segments at a 5 % false discovery rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from psycopg import sql

from aicrm.db import Connection
from aicrm.db.errors import translated
from aicrm.errors import NotFound, UsageError

Z95 = 1.959963984540054
FDR = 0.05
STAGES = ("new", "contacted", "qualified", "converted")
FloatArray = npt.NDArray[np.float64]


def wilson(converted: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (0, 0 for n = 0)."""
    if n <= 0:
        return 0.0, 0.0
    p = converted / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def two_proportions(x1: int, n1: int, x2: int, n2: int) -> tuple[float, str]:
    """Two-sided p-value that two rates differ, and the test used."""
    total = x1 + x2
    expected = [
        n1 * total / (n1 + n2), n1 * (n1 + n2 - total) / (n1 + n2),
        n2 * total / (n1 + n2), n2 * (n1 + n2 - total) / (n1 + n2),
    ]  # fmt: skip
    if min(expected) < 5:
        from scipy.stats import fisher_exact  # type: ignore[import-untyped]

        result = fisher_exact([[x1, n1 - x1], [x2, n2 - x2]])
        return float(result.pvalue), "Fisher's exact test"
    pooled = total / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0, "two-proportion z-test"
    z = (x1 / n1 - x2 / n2) / se
    return float(math.erfc(abs(z) / math.sqrt(2))), "two-proportion z-test"


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """Benjamini–Hochberg adjusted p-values (q-values), in the input's order."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 1.0
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        running = min(running, pvalues[i] * m / rank)
        adjusted[i] = running
    return adjusted


@dataclass
class Report:
    as_of: datetime
    horizon: int
    recent_days: int
    leads: int
    labelled: int
    overall: dict[str, Any]
    by_source: list[dict[str, Any]]
    by_industry: list[dict[str, Any]]
    by_cohort: list[dict[str, Any]]
    funnel: list[dict[str, Any]]
    drivers: dict[str, Any]
    changes: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(), "horizon_days": self.horizon,
            "recent_days": self.recent_days, "leads": self.leads, "labelled": self.labelled,
            "overall": self.overall, "by_source": self.by_source,
            "by_industry": self.by_industry, "by_cohort": self.by_cohort,
            "funnel": self.funnel, "drivers": self.drivers, "changes": self.changes,
            "notes": self.notes,
        }  # fmt: skip


JUDGED = """
judged AS (
    SELECT l.id, l.created_at, l.source, l.attributes,
           (l.conversion_date IS NOT NULL
            AND l.conversion_date <= l.created_at + %(horizon)s * interval '1 day') AS converted
    FROM leads l
    WHERE l.created_at + %(horizon)s * interval '1 day' <= %(as_of)s
)"""

OVERALL = """
SELECT count(*) FILTER (WHERE l.conversion_date IS NOT NULL
                        AND l.conversion_date <= l.created_at + %(horizon)s * interval '1 day')
FROM leads l WHERE l.created_at + %(horizon)s * interval '1 day' <= %(as_of)s
"""

SEGMENT_RATES = """
WITH {judged},
rated AS (
    SELECT {segment} AS segment, count(*) AS n, count(*) FILTER (WHERE converted) AS x
    FROM judged GROUP BY 1
),
timing AS (
    SELECT {segment_l} AS segment,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY d) AS median_days,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY d) AS p90_days
    FROM (SELECT l.*, extract(epoch FROM l.conversion_date - l.created_at) / 86400.0 AS d
          FROM leads l WHERE l.is_converted AND l.conversion_date <= %(as_of)s) AS l
    GROUP BY 1
)
SELECT r.segment, r.n, r.x, t.median_days::float8, t.p90_days::float8
FROM rated r LEFT JOIN timing t ON t.segment IS NOT DISTINCT FROM r.segment
ORDER BY {order}
"""

# Segments (the same expression over judged rows and over leads l), and their orders.
SOURCE = "coalesce(nullif(btrim(source), ''), '(none)')"
SOURCE_L = "coalesce(nullif(btrim(l.source), ''), '(none)')"
INDUSTRY = "coalesce(nullif(btrim(attributes ->> 'industry'), ''), '(unknown)')"
INDUSTRY_L = "coalesce(nullif(btrim(l.attributes ->> 'industry'), ''), '(unknown)')"
COHORT = "to_char(date_trunc('month', created_at AT TIME ZONE 'UTC'), 'YYYY-MM')"
COHORT_L = "to_char(date_trunc('month', l.created_at AT TIME ZONE 'UTC'), 'YYYY-MM')"
BY_SIZE = "r.n DESC, r.segment"
BY_SEGMENT = "r.segment"

FUNNEL = """
WITH {judged},
reached AS (
    SELECT j.id, greatest(
        coalesce((SELECT max(array_position(%(stages)s::text[], s.st))
                  FROM (SELECT h.changes -> 'status' ->> 0 AS st FROM crm_history h
                        WHERE h.table_name = 'leads' AND h.row_id = j.id
                          AND h.operation = 'update' AND h.changes ? 'status'
                          AND h.changed_at <= %(as_of)s
                        UNION ALL
                        SELECT h.changes -> 'status' ->> 1 FROM crm_history h
                        WHERE h.table_name = 'leads' AND h.row_id = j.id
                          AND h.operation = 'update' AND h.changes ? 'status'
                          AND h.changed_at <= %(as_of)s) AS s), 1),
        coalesce(array_position(%(stages)s::text[], l.status), 1)) AS stage
    FROM judged j JOIN leads l ON l.id = j.id
)
SELECT s.k, count(r.id) FROM generate_series(1, 4) AS s (k)
LEFT JOIN reached r ON r.stage >= s.k GROUP BY s.k ORDER BY s.k
"""

STAGE_TIMES = """
SELECT p.status, percentile_cont(0.5) WITHIN GROUP (ORDER BY p.days_in_status)::float8, count(*)
FROM lead_status_periods p
WHERE p.left_at IS NOT NULL AND p.left_at <= %(as_of)s AND p.status = ANY(%(stages)s::text[])
GROUP BY p.status
"""

CHANGES = """
WITH {judged}
SELECT {segment} AS segment,
       count(*) FILTER (WHERE created_at < %(split)s) AS n_past,
       count(*) FILTER (WHERE created_at < %(split)s AND converted) AS x_past,
       count(*) FILTER (WHERE created_at >= %(split)s) AS n_recent,
       count(*) FILTER (WHERE created_at >= %(split)s AND converted) AS x_recent
FROM judged GROUP BY 1 ORDER BY 1
"""

NOW = "SELECT now()"
LEAD_COUNTS = """
SELECT count(*), count(*) FILTER (WHERE created_at + %(horizon)s * interval '1 day' <= %(as_of)s)
FROM leads
"""
# A fixed sample of leads (by a hash of the id) that the drivers are measured on.
DRIVER_SAMPLE = """
SELECT array_agg(id::text) FROM (SELECT id FROM leads ORDER BY md5(id::text) LIMIT 20000) AS s
"""


@translated()
def analyze(
    conn: Connection,
    *,
    horizon: int = 90,
    recent_days: int = 90,
    as_of: datetime | None = None,
) -> Report:
    """The whole analysis (one snapshot); :class:`UsageError` for an empty CRM."""
    from aicrm.crm import session

    with session.transaction(conn):
        return _analyze(conn, horizon, recent_days, as_of)


def _analyze(conn: Connection, horizon: int, recent_days: int, as_of: datetime | None) -> Report:
    if as_of is None:
        row = conn.execute(NOW).fetchone()
        assert row is not None
        as_of = row[0]
    assert as_of is not None
    params: dict[str, Any] = {"horizon": horizon, "as_of": as_of, "stages": list(STAGES)}
    counts = conn.execute(LEAD_COUNTS, params).fetchone()
    assert counts is not None
    leads, labelled = int(counts[0]), int(counts[1])
    if leads == 0:
        raise UsageError("The CRM has no leads yet: there is nothing to analyse.")
    notes = []
    if labelled == 0:
        notes.append(
            f"No lead is {horizon} days old yet: rates, the funnel and changes need judged leads."
        )
    converted = conn.execute(OVERALL, params).fetchone()
    x = int(converted[0]) if converted else 0
    overall = _rate_row("all leads", labelled, x, None, None)
    by_source = _segments(conn, sql.SQL(SOURCE), sql.SQL(SOURCE_L), params, sql.SQL(BY_SIZE))
    by_industry = _segments(conn, sql.SQL(INDUSTRY), sql.SQL(INDUSTRY_L), params, sql.SQL(BY_SIZE))
    by_cohort = _segments(conn, sql.SQL(COHORT), sql.SQL(COHORT_L), params, sql.SQL(BY_SEGMENT))
    return Report(
        as_of, horizon, recent_days, leads, labelled, overall, by_source, by_industry,
        by_cohort, _funnel(conn, params), _drivers(conn, horizon, by_source, overall),
        _changes(conn, params, recent_days), notes,
    )  # fmt: skip


def _rate_row(
    segment: str, n: int, x: int, median: float | None, p90: float | None
) -> dict[str, Any]:
    low, high = wilson(x, n)
    return {
        "segment": segment, "leads": n, "converted": x,
        "rate": round(x / n, 6) if n else 0.0, "ci_low": round(low, 6),
        "ci_high": round(high, 6),
        "median_days": None if median is None else round(float(median), 3),
        "p90_days": None if p90 is None else round(float(p90), 3),
    }  # fmt: skip


def _segments(
    conn: Connection, segment: sql.SQL, segment_l: sql.SQL, params: dict[str, Any], order: sql.SQL
) -> list[dict[str, Any]]:
    query = sql.SQL(SEGMENT_RATES).format(
        judged=sql.SQL(JUDGED), segment=segment, segment_l=segment_l, order=order
    )
    rows = conn.execute(query, params).fetchall()
    return [_rate_row(str(r[0]), int(r[1]), int(r[2]), r[3], r[4]) for r in rows]


def _funnel(conn: Connection, params: dict[str, Any]) -> list[dict[str, Any]]:
    rows = conn.execute(sql.SQL(FUNNEL).format(judged=sql.SQL(JUDGED)), params).fetchall()
    reached = {int(k): int(n) for k, n in rows}
    times = {str(s): (float(m), int(n)) for s, m, n in conn.execute(STAGE_TIMES, params)}
    out = []
    for k, stage in enumerate(STAGES, start=1):
        n = reached.get(k, 0)
        previous = reached.get(k - 1)
        following = reached.get(k + 1)
        median = times.get(stage, (None, 0))[0]
        out.append(
            {
                "stage": stage,
                "reached": n,
                "share_of_previous": round(n / previous, 6) if previous else None,
                "drop_off": round(1 - following / n, 6) if n and following is not None else None,
                "median_days": None if median is None else round(median, 3),
                "completed_periods": times.get(stage, (None, 0))[1],
            }
        )
    return out


def _changes(conn: Connection, params: dict[str, Any], recent_days: int) -> dict[str, Any]:
    split = params["as_of"] - timedelta(days=params["horizon"] + recent_days)
    found = []
    for dimension, segment in (("source", sql.SQL(SOURCE)), ("industry", sql.SQL(INDUSTRY))):
        query = sql.SQL(CHANGES).format(judged=sql.SQL(JUDGED), segment=segment)
        rows = conn.execute(query, params | {"split": split}).fetchall()
        for seg, n_past, x_past, n_recent, x_recent in rows:
            if n_past < 10 or n_recent < 10:
                continue
            p, test = two_proportions(int(x_recent), int(n_recent), int(x_past), int(n_past))
            found.append(
                {
                    "dimension": dimension,
                    "segment": str(seg),
                    "past_leads": int(n_past),
                    "past_rate": round(x_past / n_past, 6),
                    "recent_leads": int(n_recent),
                    "recent_rate": round(x_recent / n_recent, 6),
                    "p_value": p,
                    "test": test,
                }
            )
    qvalues = benjamini_hochberg([f["p_value"] for f in found])
    significant = []
    for row, q in zip(found, qvalues, strict=True):
        row["p_value"] = float(f"{row['p_value']:.6g}")
        row["q_value"] = float(f"{q:.6g}")
        if q < FDR:
            direction = "rose" if row["recent_rate"] > row["past_rate"] else "fell"
            row["sentence"] = (
                f"{row['dimension'].capitalize()} '{row['segment']}': conversion {direction} from "
                f"{row['past_rate']:.1%} ({row['past_leads']} leads) to {row['recent_rate']:.1%} "
                f"({row['recent_leads']} leads created since {split:%Y-%m-%d}); {row['test']}, "
                f"p = {row['p_value']:.2g}, q = {q:.2g}"
            )
            significant.append(row)
    return {
        "test": (
            "recent vs earlier leads per source and industry; two-sided two-proportion z-test "
            "(Fisher's exact test when an expected count is below 5), Benjamini–Hochberg at "
            f"{FDR:.0%} FDR; segments with at least 10 leads on each side"
        ),
        "split": split.isoformat(),
        "tested": found,
        "segments": significant,
    }


def _drivers(
    conn: Connection, horizon: int, by_source: list[dict[str, Any]], overall: dict[str, Any]
) -> dict[str, Any]:
    from aicrm.ai import scoring
    from aicrm.ai._features import creation_frame

    try:
        stored = scoring.load_active(conn)
    except (NotFound, UsageError):
        stored = None
    if stored is None or stored.method != "model":
        sentences = []
        base = overall["rate"]
        for row in by_source:
            if row["leads"] < 20 or base <= 0:
                continue
            ratio = row["rate"] / base
            if row["ci_low"] > base or row["ci_high"] < base:
                word = "more" if ratio > 1 else "less"
                sentences.append(
                    f"Leads from '{row['segment']}' convert {ratio:.1f}× as often as the average "
                    f"({row['rate']:.1%} vs {base:.1%}): {word} likely, beyond chance."
                )
        return {
            "source": "rates by source (no scoring model is active; 'aicrm ai train' adds one)",
            "sentences": sentences
            or ["No source converts differently from the average beyond chance."],
            "factors": [],
        }
    ids_row = conn.execute(DRIVER_SAMPLE).fetchone()
    sample = list(ids_row[0] or []) if ids_row else []
    frame = creation_frame(conn, stored.features, horizon=horizon, lead_ids=sample)
    pred = scoring.predict(stored, frame)
    col_of = {f.name: j for j, f in enumerate(stored.features)}
    factors = []
    for g, feature in enumerate(pred.groups):
        contrib = pred.contributions[:, g]
        # how much the factor moves leads apart (its spread), not its offset from the
        # average training observation
        importance = float(np.mean(np.abs(contrib - contrib.mean()))) if len(contrib) else 0.0
        raw = frame.values[:, col_of[feature.name]]
        entry: dict[str, Any] = {"feature": feature.name, "label": feature.label,
                                 "importance": round(importance, 4)}  # fmt: skip
        if feature.kind == "category":
            effects = []
            for code, name in [(i + 1, c) for i, c in enumerate(feature.categories)]:
                mask = raw == code
                if mask.sum() >= 20:
                    effects.append((name, float(np.mean(contrib[mask])), int(mask.sum())))
            effects.sort(key=lambda e: -e[1])
            entry["values"] = [{"value": v, "log_odds": round(c, 4), "leads": n}
                               for v, c, n in effects]  # fmt: skip
            if len(effects) >= 2 and effects[0][1] - effects[-1][1] > 0.05:
                top, bottom = effects[0], effects[-1]
                entry["sentence"] = (
                    f"{feature.label}: '{top[0]}' raises the odds most (×{math.exp(top[1]):.2f} "
                    f"on average), '{bottom[0]}' lowers them most (×{math.exp(bottom[1]):.2f})."
                )
        else:
            entry.update(numeric_effect(feature.label, raw, contrib))
        factors.append(entry)
    factors.sort(key=lambda f: -f["importance"])
    sentences = [f["sentence"] for f in factors if "sentence" in f][:8]
    return {
        "source": f"model {stored.version} ({stored.algorithm}), leads at their creation",
        "sentences": sentences or ["The model finds no factor that moves the odds much."],
        "factors": factors,
    }


SHAPE_BINS = 5


def numeric_effect(label: str, raw: FloatArray, contrib: FloatArray) -> dict[str, Any]:
    """How a numeric (or yes/no) factor moves the odds, in words: its mean contribution
    in quantile bins of its value, read as a shape. A rise or fall says which way and
    how far from the 10th to the 90th percentile; when a middle bin is the highest or
    the lowest, beyond both ends by more than noise (a quarter of the profile's range,
    and 0.1 log-odds), the effect is called what it is, U-shaped or peaked, with the
    range of values where the odds are lowest or highest. Empty when too few leads
    have a value."""
    finite = ~np.isnan(raw)
    if finite.sum() < 20 or np.ptp(raw[finite]) <= 0:
        return {}
    values, effect = raw[finite], contrib[finite]
    lo, hi = np.quantile(values, [0.1, 0.9])
    change = float(np.mean(effect[values >= hi]) - np.mean(effect[values <= lo]))
    out: dict[str, Any] = {"effect_p10_to_p90": round(change, 4)}
    if set(np.unique(values).tolist()) <= {0.0, 1.0}:
        if abs(change) > 0.05:
            direction = "raises" if change > 0 else "lowers"
            out["sentence"] = f"{label}: yes {direction} the odds (×{math.exp(change):.2f} vs no)."
        return out
    profile = _profile(values, effect)
    means = np.array([m for _a, _b, m in profile])
    if len(profile) >= 3:
        ends = (means[0], means[-1])
        noise = max(0.1, 0.25 * float(np.ptp(means)))
        top, bottom = int(np.argmax(means)), int(np.argmin(means))
        out["profile"] = [
            {"from": round(a, 4), "to": round(b, 4), "log_odds": round(m, 4)} for a, b, m in profile
        ]
        if 0 < bottom < len(profile) - 1 and min(ends) - means[bottom] > noise:
            a, b, m = profile[bottom]
            out["shape"] = "u-shaped"
            out["sentence"] = (
                f"{label} has a U-shaped effect, not a steady one: the odds are lowest from "
                f"{_short(a)} to {_short(b)} (×{math.exp(m - min(ends)):.2f} against the "
                "nearer end) and higher both below and above."
            )
            return out
        if 0 < top < len(profile) - 1 and means[top] - max(ends) > noise:
            a, b, m = profile[top]
            out["shape"] = "peaked"
            out["sentence"] = (
                f"{label} has a peaked effect, not a steady one: the odds are highest from "
                f"{_short(a)} to {_short(b)} (×{math.exp(m - max(ends)):.2f} against the "
                "nearer end) and lower both below and above."
            )
            return out
    if abs(change) > 0.05:
        out["shape"] = "rising" if change > 0 else "falling"
        direction = "raises" if change > 0 else "lowers"
        out["sentence"] = (
            f"More {label.lower()} {direction} the odds: "
            f"×{math.exp(change):.2f} from {_short(lo)} to {_short(hi)}."
        )
    return out


def _profile(values: FloatArray, effect: FloatArray) -> list[tuple[float, float, float]]:
    """(lowest value, highest value, mean contribution) per quantile bin of ``values``
    (bins merged where values repeat)."""
    edges = np.unique(np.quantile(values, np.linspace(0, 1, SHAPE_BINS + 1)[1:-1]))
    which = np.searchsorted(edges, values, side="right")
    out = []
    for k in range(len(edges) + 1):
        mask = which == k
        if mask.sum() >= 5:
            out.append(
                (float(values[mask].min()), float(values[mask].max()), float(effect[mask].mean()))
            )
    return out


def _short(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 or value == int(value) else f"{value:.1f}"
