"""The transparent prior: smoothed conversion rates by source and segment.

Below the data minimum no model is fit; a lead's score is the conversion rate of its
source and segment (``attributes.industry`` when at least half the labelled leads have
one), each rate smoothed towards its parent's with :data:`PRIOR_STRENGTH` pseudo-leads.
The prior is also the baseline the publish gate compares every trained model with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from psycopg import sql

from aicrm.ai._features import Feature, Frame, attribute_expr, builtin_expr, param_name
from aicrm.ai._window import LABELLED, Window, labelled_query
from aicrm.db import Connection
from aicrm.db.errors import translated

PRIOR_STRENGTH = 20.0  # pseudo-leads pulling a small group's rate towards its parent's
SEGMENT_KEY = "industry"
NONE = "(none)"

# How many labelled leads have the segment key as a string: the segment is used when
# at least half do.
SEGMENT_COVERAGE = """
SELECT count(*) FILTER (WHERE jsonb_typeof(l.attributes -> %(key)s) = 'string') AS with_key,
       count(*) AS labelled
FROM leads l WHERE {labelled}
"""

# Every value a category feature takes on the labelled leads ({expr} is the feature's
# SQL from aicrm.ai._features: this package's own text, with values as parameters).
DISTINCT_VALUES = """
SELECT DISTINCT ({expr})::text AS v FROM leads l WHERE {labelled} ORDER BY 1
"""

FloatArray = npt.NDArray[np.float64]


def logit(p: float) -> float:
    """log(p / (1 - p)), with p kept away from 0 and 1."""
    q = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(q / (1 - q))


@dataclass
class Prior:
    """Smoothed conversion rates: overall, by source, by (source, segment).

    ``rate(source) = (conversions + k·overall) / (leads + k)`` and likewise the
    segment's rate within its source, with ``k`` = :data:`PRIOR_STRENGTH`; the
    overall rate is ``(conversions + 1) / (leads + 2)``."""

    overall: float
    n: int
    sources: dict[str, list[float]]  # source -> [leads, conversions, rate]
    segments: dict[str, dict[str, list[float]]]  # source -> segment -> [leads, conv, rate]
    segment_key: str | None

    @classmethod
    def fit(
        cls,
        sources: Sequence[str | None],
        segments: Sequence[str | None],
        y: Sequence[int],
        segment_key: str | None,
    ) -> Prior:
        """The rates of these labelled observations."""
        n = len(y)
        overall = (sum(y) + 1.0) / (n + 2.0)
        by_source: dict[str, list[float]] = {}
        by_segment: dict[str, dict[str, list[float]]] = {}
        for source, segment, label in zip(sources, segments, y, strict=True):
            s = source or NONE
            counts = by_source.setdefault(s, [0.0, 0.0, 0.0])
            counts[0] += 1
            counts[1] += label
            if segment_key is not None:
                seg = by_segment.setdefault(s, {}).setdefault(segment or NONE, [0.0, 0.0, 0.0])
                seg[0] += 1
                seg[1] += label
        for s, counts in by_source.items():
            counts[2] = (counts[1] + PRIOR_STRENGTH * overall) / (counts[0] + PRIOR_STRENGTH)
            for seg in by_segment.get(s, {}).values():
                seg[2] = (seg[1] + PRIOR_STRENGTH * counts[2]) / (seg[0] + PRIOR_STRENGTH)
        return cls(overall, n, by_source, by_segment, segment_key)

    def predict(
        self, sources: Sequence[str | None], segments: Sequence[str | None]
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Scores, the (source, segment) contributions in log-odds, and confidences
        (the share of each estimate that comes from data rather than smoothing)."""
        n = len(sources)
        p = np.empty(n)
        contrib = np.zeros((n, 2))
        confidence = np.empty(n)
        base = logit(self.overall)
        for i, (source, segment) in enumerate(zip(sources, segments, strict=True)):
            s = source or NONE
            counts = self.sources.get(s)
            rate_s = counts[2] if counts else self.overall
            rate = rate_s
            support = counts[0] if counts else 0.0
            seg = self.segments.get(s, {}).get(segment or NONE)
            if self.segment_key is not None and seg is not None:
                rate = seg[2]
                support = seg[0]
            p[i] = rate
            contrib[i, 0] = logit(rate_s) - base
            contrib[i, 1] = logit(rate) - logit(rate_s)
            confidence[i] = support / (support + PRIOR_STRENGTH)
        return p, contrib, confidence

    def to_dict(self) -> dict[str, Any]:
        """The rates as JSON (stored in the model's ``params``)."""
        return {
            "overall": self.overall,
            "n": self.n,
            "sources": self.sources,
            "segments": self.segments,
            "segment_key": self.segment_key,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Prior:
        """The prior :meth:`to_dict` wrote (KeyError/TypeError when it is not one)."""
        return cls(
            overall=float(data["overall"]),
            n=int(data["n"]),
            sources=data["sources"],
            segments=data["segments"],
            segment_key=data.get("segment_key"),
        )


def prior_features(segment_key: str | None) -> list[Feature]:
    """The prior's inputs: the source, and the segment when there is one."""
    found = [Feature("source", "category")]
    if segment_key is not None:
        found.append(Feature(f"attr:{segment_key}", "category", key=segment_key))
    return found


def prior_inputs(
    features: Sequence[Feature], frame: Frame
) -> tuple[list[str | None], list[str | None]]:
    """The source and segment names of the frame's rows (None when missing)."""

    def names(j: int) -> list[str | None]:
        if j >= len(features):
            return [None] * len(frame)
        cats = features[j].categories
        out: list[str | None] = []
        for code in frame.values[:, j]:
            c = int(code) if not math.isnan(code) else 0
            out.append(cats[c - 1] if c > 0 else ("(other)" if c < 0 else None))
        return out

    return names(0), names(1)


@translated()
def segment_key(conn: Connection, window: Window) -> str | None:
    """:data:`SEGMENT_KEY` when at least half the labelled leads have it, else None."""
    row = conn.execute(
        labelled_query(sql.SQL(SEGMENT_COVERAGE)), window.params() | {"key": SEGMENT_KEY}
    ).fetchone()
    return SEGMENT_KEY if row and row[1] and row[0] >= 0.5 * row[1] else None


@translated()
def all_values(conn: Connection, feature: Feature, window: Window) -> list[str]:
    """Every value the category ``feature`` takes on the labelled leads, sorted."""
    expr: sql.Composable
    if feature.key is not None:
        expr = attribute_expr(feature)
        params: dict[str, Any] = {param_name(feature): feature.key}
    else:
        expr = builtin_expr(feature.name)
        params = {}
    query = sql.SQL(DISTINCT_VALUES).format(expr=expr, labelled=LABELLED)
    rows = conn.execute(query, params | window.params()).fetchall()
    return [str(r[0]) for r in rows if r[0] is not None]
