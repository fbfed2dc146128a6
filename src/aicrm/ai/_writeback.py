"""Writing scores back: each lead's ``lead_scoring`` entry made as JSON text, one COPY
into a staging table, then one UPDATE of ``leads``.

The entry is made in Python (the parts common to every lead once, each factor's
feature and value text once per term of the vocabulary, :class:`Terms`) while
PostgreSQL still computes features; the staging rows are copied in the order the leads
lie in the table, and the UPDATE merges the entry into ``ai_annotations`` in SQL, under
the row lock, so other annotators' entries are kept (docs/lead-scoring.md).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from psycopg import sql

from aicrm.ai._features import Frame
from aicrm.ai._prediction import TIERS, Predictions, groups
from aicrm.ai._store import KIND, StoredModel
from aicrm.crm import session
from aicrm.db import Connection
from aicrm.db.errors import translated

ANNOTATOR = "lead_scoring"
STAGING = "aicrm_scoring_staging"
CREATE_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS {staging} (id uuid NOT NULL, score float8 NOT NULL, "
    "entry jsonb NOT NULL) ON COMMIT DROP"
)
COPY_STAGING = "COPY {staging} (id, score, entry) FROM STDIN"
ANALYZE_STAGING = "ANALYZE {staging}"
WORK_MEM = "SELECT current_setting('work_mem')"
# room for a hash table: one pass over leads, the staging rows in its order
WIDE_WORK_MEM = "SET LOCAL work_mem = '256MB'"
RESTORE_WORK_MEM = "SELECT set_config('work_mem', %s, true)"
COPY_LINES = 20_000

# The score trend (migration 011): a row per lead whose score moved by TREND_STEP or
# more since its last row, or that another model scored (aicrm.ai.trend).
TREND_STEP = 0.01
HAS_TREND = "SELECT to_regclass('lead_score_history') IS NOT NULL"
RECORD_TREND = """
INSERT INTO lead_score_history (lead_id, model_version, score)
SELECT s.id, %(version)s, s.score FROM {staging} s
WHERE NOT EXISTS (
    SELECT 1 FROM (SELECT h.score, h.model_version FROM lead_score_history h
                   WHERE h.lead_id = s.id ORDER BY h.scored_at DESC, h.id DESC LIMIT 1) last
    WHERE last.model_version = %(version)s AND abs(last.score - s.score) < %(step)s
)
"""


@dataclass
class Terms:
    """The factor vocabulary: term number (1-based) -> feature name, label, fixed value
    text (None: the value travels as a number); ``index`` maps (group, code) to it."""

    names: list[str]
    labels: list[str]
    values: list[str | None]
    index: dict[tuple[int, int], int]


def make_terms(stored: StoredModel) -> Terms:
    """The factor vocabulary: a numeric factor has one term per feature (its value
    travels as a number); a category has one term per value."""
    names: list[str] = []
    labels: list[str] = []
    values: list[str | None] = []
    index: dict[tuple[int, int], int] = {}
    for g, feature in enumerate(groups(stored)):
        if feature.kind == "category":
            options = [(0, "(missing)"), (-1, "(other)")] + [
                (i + 1, c) for i, c in enumerate(feature.categories)
            ]
            for code, text in options:
                names.append(feature.name)
                labels.append(feature.label)
                values.append(text)
                index[(g, code)] = len(names)
        else:
            names.append(feature.name)
            labels.append(feature.label)
            values.append(None)
            index[(g, 0)] = len(names)
    return Terms(names, labels, values, index)


def factor_table(
    stored: StoredModel, frame: Frame, pred: Predictions, top: int, terms: Terms
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """For each row its ``top`` factors: term index (1-based; 0 none), numeric value
    (NaN for categories) and contribution, largest |contribution| first."""
    n, g = pred.contributions.shape
    k = min(top, g)
    order = np.argsort(-np.abs(pred.contributions), axis=1, kind="stable")[:, :k]
    index = terms.index
    col_of = {f.name: j for j, f in enumerate(stored.features)}
    term = np.zeros((n, top), dtype=np.int32)
    value = np.full((n, top), np.nan)
    contribution = np.zeros((n, top))
    rows = np.arange(n)
    for r in range(k):
        chosen = order[:, r]
        contribution[:, r] = pred.contributions[rows, chosen]
        for gi, feature in enumerate(pred.groups):
            mask = chosen == gi
            if not mask.any():
                continue
            raw = frame.values[mask, col_of[feature.name]]
            if feature.kind == "category":
                codes = np.nan_to_num(raw, nan=0).astype(np.int64)
                # code -1 (other), 0 (missing), 1..k -> term numbers, by an array lookup
                lookup = np.array(
                    [index.get((gi, c), 0) for c in range(-1, len(feature.categories) + 1)],
                    dtype=np.int32,
                )
                term[mask, r] = lookup[np.clip(codes, -1, len(feature.categories)) + 1]
            else:
                term[mask, r] = index[(gi, 0)]
                value[mask, r] = raw
    return term, value, contribution


# The staging table holds each lead's new entry of the lead_scoring annotator; the
# UPDATE merges it into the lead's annotations in SQL, under the row lock, so other
# annotators' entries are kept. The expression is aicrm_annotate(annotations,
# 'lead_scoring', entry, false) of migration 004 written out with jsonb operators
# (the entry always carries its whole `values`, so "replace values" is the entry
# over the previous entry): calling the SQL function cost ~6 s per million leads,
# as it cannot be inlined. A test checks both give the same result.
WRITE_BACK = """
UPDATE leads l SET ai_score = s.score,
    ai_annotations = CASE WHEN jsonb_typeof(l.ai_annotations) = 'object' THEN l.ai_annotations
                          WHEN l.ai_annotations IS NULL THEN '{{}}'::jsonb
                          ELSE jsonb_build_object('_previous', l.ai_annotations) END
        || jsonb_build_object(%(annotator)s::text,
               CASE WHEN jsonb_typeof(l.ai_annotations -> %(annotator)s::text) = 'object'
                    THEN l.ai_annotations -> %(annotator)s::text ELSE '{{}}'::jsonb END
               || s.entry)
FROM {staging} s WHERE l.id = s.id
"""


def _json(value: Any) -> str:
    """JSON text, escaped for COPY's text format."""
    return json.dumps(value).replace("\\", "\\\\")


def _g4(value: float) -> str:
    """A number as JSON with 4 significant digits (null for NaN)."""
    return "null" if value != value else f"{value:.4g}"


def _value_text(value: float) -> str:
    """A factor's numeric value as JSON: 4 significant digits, a whole number from
    10,000 on (12345 employees, not 1.234e+04), null when unknown."""
    if value != value:
        return "null"
    if abs(value) >= 1e4:
        return f"{value:.0f}"
    return f"{value:.4g}"


@dataclass
class Staged:
    """Staging rows (COPY text lines) and where each lead lies in the table."""

    lines: list[str]
    positions: npt.NDArray[np.float64]


def staging_rows(
    stored: StoredModel,
    frame: Frame,
    pred: Predictions,
    top: int,
    terms: Terms,
    head: tuple[str, str],
) -> Staged:
    """The frame's rows of the staging table in COPY text format: id, score and the
    annotator's entry as JSON, factors as ``[feature, value, contribution]`` (the parts
    common to every lead, ``head``, made once by :func:`entry_head`)."""
    term, value, contribution = factor_table(stored, frame, pred, top, terms)
    k = min(top, pred.contributions.shape[1])
    # each term's text up to its value: '["status", "lost", ' or '["age_days", '
    prefix = [
        f"[{_json(name)}, " + (f"{_json(text)}, " if text is not None else "")
        for name, text in zip(terms.names, terms.values, strict=True)
    ]
    numeric = [text is None for text in terms.values]
    start, middle = head
    tier_names = ["", *TIERS]
    factor_lists = []
    for r in range(k):
        t_r = term[:, r].tolist()
        v_r = value[:, r].tolist()
        c_r = contribution[:, r].tolist()
        factor_lists.append(
            [
                f"{prefix[t - 1]}{_value_text(v) + ', ' if numeric[t - 1] else ''}{c:.4g}]"
                for t, v, c in zip(t_r, v_r, c_r, strict=True)
            ]
        )
    ids = frame.lead_ids
    scores = pred.scores.tolist()
    tiers = pred.tiers.tolist()
    confidences = pred.confidence.tolist()
    lines = []
    for i, key in enumerate(ids):
        factors = ", ".join(f[i] for f in factor_lists)
        lines.append(
            f'{key}\t{scores[i]!r}\t{start}"confidence": {_g4(confidences[i])}, {middle}'
            f'"score": {scores[i]:.4g}, "tier": "{tier_names[tiers[i]]}", '
            f'"factors": [{factors}]}}}}\n'
        )
    positions = frame.positions if frame.positions is not None else np.zeros(len(frame))
    return Staged(lines, positions)


def produced_now() -> str:
    """Now, to the second, as the entries' ``produced_at`` says it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def entry_head(stored: StoredModel, as_of: datetime | None) -> tuple[str, str]:
    """The JSON text of the entry before its confidence, and of its values before the
    score: the same for every lead of a run. ``as_of`` is written only when scoring
    was asked for another moment than now (``produced_at`` says when otherwise)."""
    produced = produced_now()
    start = (
        f'{{"model": {_json(KIND)}, "version": {_json(stored.version)}, '
        f'"produced_at": "{produced}", '
    )
    horizon, method = int(stored.horizon), _json(stored.method)
    middle = f'"values": {{"horizon_days": {horizon}, "method": {method}, '
    if as_of is not None:
        middle += f'"as_of": {_json(as_of.isoformat())}, '
    return start, middle


@translated()
def write_back(
    conn: Connection, staged: Sequence[Staged], actor: str | None, version: str | None = None
) -> None:
    """One COPY of the staging rows, in the order the leads lie in the table, into a
    temporary table; then one UPDATE of leads that sets ai_score and merges the
    annotation in SQL; with the model's ``version``, the leads whose score moved get a
    row of their trend (``lead_score_history``, when the database has it)."""
    positions = np.concatenate([s.positions for s in staged]) if staged else np.zeros(0)
    lines = [line for s in staged for line in s.lines]
    order = np.argsort(positions, kind="stable").tolist()
    staging = sql.Identifier(STAGING)
    with session.transaction(conn, actor):
        conn.execute(sql.SQL(CREATE_STAGING).format(staging=staging))
        with conn.cursor().copy(sql.SQL(COPY_STAGING).format(staging=staging)) as copy:
            for begin in range(0, len(order), COPY_LINES):
                copy.write("".join([lines[i] for i in order[begin : begin + COPY_LINES]]))
        conn.execute(sql.SQL(ANALYZE_STAGING).format(staging=staging))
        memory = conn.execute(WORK_MEM).fetchone()
        conn.execute(WIDE_WORK_MEM)
        conn.execute(sql.SQL(WRITE_BACK).format(staging=staging), {"annotator": ANNOTATOR})
        if memory is not None:
            conn.execute(RESTORE_WORK_MEM, (memory[0],))
        trend = conn.execute(HAS_TREND).fetchone()
        if version is not None and trend is not None and trend[0]:
            conn.execute(
                sql.SQL(RECORD_TREND).format(staging=staging),
                {"version": version, "step": TREND_STEP},
            )
