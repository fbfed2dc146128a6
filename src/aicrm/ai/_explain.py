"""Explaining scores: one lead's factors in words, and the stored annotation read back.

:func:`explain` recomputes a lead's score with the active model and lists every
factor's contribution on the calibrated log-odds with its odds factor; the stored
``lead_scoring`` entry keeps the top factors as compact ``[feature, value,
contribution]`` triples, which :func:`stored_factors` and :func:`readable` spell out.
Engagement factors are put in plain words ("3 calls in the last 14 days", "no activity
for 40 days": :mod:`aicrm.ai._engagement`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from psycopg.rows import class_row

from aicrm.ai._engagement import engagement_words
from aicrm.ai._features import LABELS, Feature, scoring_frame
from aicrm.ai._model import sigmoid
from aicrm.ai._prediction import TIERS, predict
from aicrm.ai._store import json_safe, load_active
from aicrm.ai._window import server_now
from aicrm.ai._writeback import ANNOTATOR
from aicrm.ai.closed import Outcome, outcome
from aicrm.crm import ids, session
from aicrm.db import Connection
from aicrm.db.errors import translated
from aicrm.errors import NotFound

LEAD_HEADLINE = """
SELECT coalesce(nullif(btrim(concat_ws(' ', first_name, last_name)), ''), company_name,
                email, id::text) AS name,
       status, is_converted, ai_annotations -> %(annotator)s AS entry,
       (SELECT s.category FROM lead_statuses s WHERE s.name = leads.status) AS category
FROM leads WHERE id = %(id)s
"""


@dataclass
class Headline:
    """What :data:`LEAD_HEADLINE` reads of the lead explained."""

    name: str
    status: str
    is_converted: bool
    entry: Any
    category: str | None  # the status's category (lead_statuses): open, converted, lost


def stored_factors(values: Any) -> list[dict[str, Any]]:
    """The factors of a stored ``lead_scoring`` entry's ``values``, readable: each a
    dict with ``feature``, ``label``, ``value`` and ``contribution``, largest effect
    first, and for an engagement factor its ``words`` ("3 calls in the last 14 days").
    Reads the compact form bulk scoring writes (``[feature, value, contribution]``) and
    the older one (a dict per factor, label included); anything else is left out."""
    found = values.get("factors") if isinstance(values, dict) else None
    out: list[dict[str, Any]] = []
    for item in found if isinstance(found, list) else []:
        factor: dict[str, Any] | None = None
        if isinstance(item, dict) and "feature" in item:
            factor = {"label": factor_label(str(item["feature"]))} | item
        elif isinstance(item, list) and len(item) == 3 and isinstance(item[0], str):
            feature, value, contribution = item
            if isinstance(contribution, int | float):
                factor = {"feature": feature, "label": factor_label(feature), "value": value,
                          "contribution": float(contribution)}  # fmt: skip
        if factor is None:
            continue
        words = engagement_words(str(factor["feature"]), factor.get("value"))
        if words is not None and "words" not in factor:
            factor["words"] = words  # "3 calls in the last 14 days"
        out.append(factor)
    return out


def factor_label(name: str) -> str:
    """The label of a feature from its name alone (no model needed): the built-in
    labels, and ``attr:company_size`` -> "Company size"."""
    if name.startswith("attr:"):
        return Feature(name, "numeric", key=name[5:]).label
    return LABELS.get(name, name)


def readable(entry: Any) -> Any:
    """A stored ``lead_scoring`` entry with its compact factors spelled out (see
    :func:`stored_factors`); anything that is not an entry is returned as it is."""
    if not isinstance(entry, dict) or not isinstance(entry.get("values"), dict):
        return entry
    values = entry["values"]
    if "factors" not in values:
        return entry
    return entry | {"values": values | {"factors": stored_factors(values)}}


@dataclass
class Factor:
    feature: str
    label: str
    value: Any
    contribution: float

    @property
    def said(self) -> str:
        """What the factor is: its label, or an engagement factor in words ("3 calls in
        the last 14 days")."""
        words = engagement_words(self.feature, self.value)
        return self.label if words is None else words[:1].upper() + words[1:]

    @property
    def words(self) -> str:
        odds = math.exp(self.contribution)
        said = self.said  # an engagement factor's words already hold its value
        what = f"{self.label}: {_shown(self.value)}" if said == self.label else said
        if abs(self.contribution) < 0.01:
            return f"{what} — no effect"
        direction = "raises" if self.contribution > 0 else "lowers"
        return f"{what} — {direction} the odds ×{odds:.2f}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature, "label": self.label, "value": json_safe(self.value),
            "contribution": round(self.contribution, 4),
            "odds_factor": round(math.exp(self.contribution), 4),
            "words": self.words,
        }  # fmt: skip


def _shown(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, float):
        return f"{value:.0f}" if value == int(value) else f"{value:.2f}"
    return str(value)


@dataclass(kw_only=True)
class Explanation:
    lead_id: str
    name: str
    status: str
    is_converted: bool
    score: float
    tier: str
    method: str
    version: str
    horizon: int
    base_rate: float
    bias: float
    factors: list[Factor]
    stored: dict[str, Any] | None
    warnings: list[str]
    outcome: Outcome | None = None  # converted or lost: no chance to convert to show

    def to_dict(self) -> dict[str, Any]:
        closed: dict[str, Any] = {}
        if self.outcome is not None:
            closed = {"score": None, "tier": None, "outcome": self.outcome.to_dict()}
        return {
            "lead_id": self.lead_id, "name": self.name, "status": self.status,
            "is_converted": self.is_converted, "score": round(self.score, 4), "tier": self.tier,
            "method": self.method, "model_version": self.version, "horizon_days": self.horizon,
            "base_rate": round(self.base_rate, 4), "bias_log_odds": round(self.bias, 4),
            "factors": [f.to_dict() for f in self.factors], "stored_annotation": self.stored,
            "warnings": self.warnings,
        } | closed  # fmt: skip


@translated()
def explain(conn: Connection, lead_id: str, *, as_of: datetime | None = None) -> Explanation:
    """Why the active model gives this lead its score: every factor's contribution,
    largest first, computed now (the stored annotation is shown alongside)."""
    key = str(ids.parse(lead_id, "lead id"))
    with session.transaction(conn):
        return _explain(conn, key, as_of)


def _explain(conn: Connection, key: str, as_of: datetime | None) -> Explanation:
    stored = load_active(conn)
    with conn.cursor(row_factory=class_row(Headline)) as cur:
        row = cur.execute(LEAD_HEADLINE, {"annotator": ANNOTATOR, "id": key}).fetchone()
    if row is None:
        raise NotFound(f"No lead has id {key}.")
    moment = as_of or server_now(conn)
    closed = outcome(conn, key, as_of)
    frame = scoring_frame(
        conn, stored.features, as_of=moment, lead_ids=[key], include_converted=True
    )
    pred = predict(stored, frame)
    col_of = {f.name: j for j, f in enumerate(stored.features)}
    factors = []
    for g, feature in enumerate(pred.groups):
        raw = frame.values[0, col_of[feature.name]]
        shown: Any
        if feature.kind == "category":
            code = 0 if math.isnan(raw) else int(raw)
            shown = feature.categories[code - 1] if code > 0 else "(other)" if code < 0 else None
        elif feature.kind == "binary":
            shown = None if math.isnan(raw) else ("yes" if raw else "no")
        else:
            shown = None if math.isnan(raw) else float(raw)
        factors.append(Factor(feature.name, feature.label, shown, float(pred.contributions[0, g])))
    factors.sort(key=lambda f: -abs(f.contribution))
    base_rate = float(stored.params.get("base_rate", sigmoid(np.array([pred.bias]))[0]))
    if stored.prior is not None:
        base_rate = stored.prior.overall
    return Explanation(
        lead_id=key,
        name=row.name,
        status=row.status,
        is_converted=row.is_converted,
        score=float(pred.scores[0]),
        tier=TIERS[int(pred.tiers[0]) - 1],
        method=stored.method,
        version=stored.version,
        horizon=stored.horizon,
        base_rate=base_rate,
        bias=pred.bias,
        factors=factors,
        stored=readable(row.entry),
        warnings=pred.warnings + _closed(closed),
        outcome=closed,
    )


def _closed(found: Outcome | None) -> list[str]:
    """A converted or lost lead has no chance to convert left: no score is shown, and
    the factors are only what the model gives its features."""
    if found is None:
        return []
    return [
        f"This lead is {found.category} ({found.summary}): it has no chance to convert to "
        "score; the factors are what the model gives its features."
    ]
