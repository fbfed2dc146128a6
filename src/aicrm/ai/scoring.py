"""Lead scoring: train on the CRM's history, score leads in bulk, explain one lead.

The task: the probability that a lead converts within ``horizon`` days (90 by
default) of the moment it is scored. Training examples are leads observed at their
creation (and, while still open, at later *landmarks*: 30 and 60 days after
creation by default), labelled 1 when they converted within the horizon after
that moment; only observations whose horizon has fully passed count. See
docs/lead-scoring.md.

Below the data minimum (:data:`MIN_LABELLED` leads observed at creation with at
least :data:`MIN_CONVERSIONS` conversions and as many non-conversions) no model
is fit: the score is a transparent *prior*, the conversion rate of the lead's
source and segment smoothed towards the overall rate, and the annotation says
``"method": "prior"``.

Scores go to ``leads.ai_score`` and to the ``lead_scoring`` annotator's entry in
``ai_annotations`` (score, tier, top factors, horizon, method, model version),
written set-based: one binary COPY into a staging table, then one UPDATE.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from psycopg.types.json import Jsonb

from aicrm.ai import features as F
from aicrm.ai import model as M
from aicrm.ai.annotations import require_schema
from aicrm.crm import ids, session
from aicrm.db import Connection
from aicrm.errors import InvalidInput, NotFound, UsageError

ANNOTATOR = "lead_scoring"
KIND = "lead_scoring"
HORIZON = 90
LANDMARKS = (0, 30, 90, 180, 365)
MIN_LABELLED = 200
MIN_CONVERSIONS = 25
PRIOR_STRENGTH = 20.0  # pseudo-leads pulling a small group's rate towards its parent's
SEGMENT_KEY = "industry"
TIERS = ("A", "B", "C", "D")
TIER_SHARES = (0.10, 0.20, 0.30)  # A: top 10 %, B: next 20 %, C: next 30 %, D: the rest
TOP_FACTORS = 3

Progress = Callable[[str], None]


def _quiet(_text: str) -> None:
    return None


# --- the transparent prior ---------------------------------------------------------


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
        cls, sources: Sequence[str | None], segments: Sequence[str | None], y: Sequence[int],
        segment_key: str | None,
    ) -> Prior:  # fmt: skip
        n = len(y)
        overall = (sum(y) + 1.0) / (n + 2.0)
        by_source: dict[str, list[float]] = {}
        by_segment: dict[str, dict[str, list[float]]] = {}
        for source, segment, label in zip(sources, segments, y, strict=True):
            s = source or "(none)"
            counts = by_source.setdefault(s, [0.0, 0.0, 0.0])
            counts[0] += 1
            counts[1] += label
            if segment_key is not None:
                seg = by_segment.setdefault(s, {}).setdefault(segment or "(none)", [0.0, 0.0, 0.0])
                seg[0] += 1
                seg[1] += label
        for s, counts in by_source.items():
            counts[2] = (counts[1] + PRIOR_STRENGTH * overall) / (counts[0] + PRIOR_STRENGTH)
            for seg in by_segment.get(s, {}).values():
                seg[2] = (seg[1] + PRIOR_STRENGTH * counts[2]) / (seg[0] + PRIOR_STRENGTH)
        return cls(overall, n, by_source, by_segment, segment_key)

    def predict(
        self, sources: Sequence[str | None], segments: Sequence[str | None]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Scores, the (source, segment) contributions in log-odds, and confidences
        (the share of each estimate that comes from data rather than smoothing)."""
        n = len(sources)
        p = np.empty(n)
        contrib = np.zeros((n, 2))
        confidence = np.empty(n)
        base = _logit(self.overall)
        for i, (source, segment) in enumerate(zip(sources, segments, strict=True)):
            s = source or "(none)"
            counts = self.sources.get(s)
            rate_s = counts[2] if counts else self.overall
            rate = rate_s
            support = counts[0] if counts else 0.0
            seg = self.segments.get(s, {}).get(segment or "(none)")
            if self.segment_key is not None and seg is not None:
                rate = seg[2]
                support = seg[0]
            p[i] = rate
            contrib[i, 0] = _logit(rate_s) - base
            contrib[i, 1] = _logit(rate) - _logit(rate_s)
            confidence[i] = support / (support + PRIOR_STRENGTH)
        return p, contrib, confidence

    def to_dict(self) -> dict[str, Any]:
        return {
            "overall": self.overall, "n": self.n, "sources": self.sources,
            "segments": self.segments, "segment_key": self.segment_key,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Prior:
        return cls(
            float(data["overall"]), int(data["n"]), data["sources"], data["segments"],
            data.get("segment_key"),
        )  # fmt: skip


def _logit(p: float) -> float:
    q = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(q / (1 - q))


# --- stored models -----------------------------------------------------------------


@dataclass
class StoredModel:
    """A model row of ``ai_models``, with what is needed to score."""

    id: int
    version: str
    method: str  # "model" or "prior"
    algorithm: str
    horizon: int
    created_at: datetime
    as_of: datetime
    trained_from: datetime | None
    trained_to: datetime | None
    n_leads: int
    n_positive: int
    n_negative: int
    metrics: dict[str, Any]
    features: list[F.Feature]
    params: dict[str, Any]
    scorer: M.Scorer | None = None
    prior: Prior | None = None

    @property
    def encoding(self) -> F.Encoding:
        return F.Encoding.from_dict(self.params["encoding"])

    @property
    def cutoffs(self) -> list[float]:
        return [float(c) for c in self.params["tier_cutoffs"]]

    @property
    def confidence(self) -> float:
        auc = self.metrics.get("auc")
        if not isinstance(auc, int | float) or math.isnan(auc):
            return 0.0
        return round(max(0.0, min(1.0, 2 * float(auc) - 1)), 4)

    def summary(self) -> dict[str, Any]:
        return {
            "version": self.version, "method": self.method, "algorithm": self.algorithm,
            "horizon_days": self.horizon, "created_at": self.created_at.isoformat(),
            "as_of": self.as_of.isoformat(),
            "trained_from": self.trained_from.isoformat() if self.trained_from else None,
            "trained_to": self.trained_to.isoformat() if self.trained_to else None,
            "leads": self.n_leads, "conversions": self.n_positive,
            "non_conversions": self.n_negative, "metrics": self.metrics,
            "features": [f.name for f in self.features],
        }  # fmt: skip


MODEL_COLUMNS = (
    "id, version, method, algorithm, horizon_days, created_at, as_of, trained_from, trained_to, "
    "n_leads, n_positive, n_negative, metrics, features, params, artifact, artifact_sha256"
)


def load_active(conn: Connection) -> StoredModel:
    """The active lead-scoring model, checked against today's schema.

    Refuses (:class:`UsageError`) a model whose feature set this aicrm no longer
    computes, one that reads a ``leads`` column that no longer exists, or one whose
    parameters do not match their checksum; :class:`NotFound` when there is none."""
    with session.transaction(conn):
        require_schema(conn)
        row = conn.execute(
            f"SELECT {MODEL_COLUMNS} FROM ai_models WHERE kind = %s AND active",  # noqa: S608
            (KIND,),
        ).fetchone()
        if row is None:
            raise NotFound("No lead-scoring model yet: run 'aicrm ai train' first.")
        return _stored(conn, row)


def _stored(conn: Connection, row: tuple[Any, ...]) -> StoredModel:
    (
        model_id, version, method, algorithm, horizon, created_at, as_of, trained_from,
        trained_to, n_leads, n_pos, n_neg, metrics, feature_list, params, artifact, sha,
    ) = row  # fmt: skip
    if int(params.get("feature_set", -1)) != F.FEATURE_SET:
        raise UsageError(
            f"Model {version} was trained with feature set {params.get('feature_set')}, and this "
            f"aicrm computes feature set {F.FEATURE_SET}; retrain it with 'aicrm ai train'."
        )
    try:
        features = [F.Feature.from_dict(f) for f in feature_list]
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(
            f"Model {version} has an unreadable feature list ({exc}); retrain it with "
            "'aicrm ai train'."
        ) from None
    unknown = [f.name for f in features if f.key is None and f.name not in F.BUILTIN]
    if unknown:
        raise UsageError(
            f"Model {version} uses features this aicrm does not know ({', '.join(unknown)}); "
            "retrain it with 'aicrm ai train'."
        )
    have = {
        r[0]
        for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'leads'::regclass "
            "AND attnum > 0 AND NOT attisdropped"
        ).fetchall()
    }
    needed = [str(c) for c in params.get("lead_columns", [])]
    missing = [c for c in needed if c not in have]
    if missing:
        raise UsageError(
            f"Model {version} was trained on lead columns that no longer exist "
            f"({', '.join(missing)}); retrain it with 'aicrm ai train' on today's columns."
        )
    stored = StoredModel(
        int(model_id), str(version), str(method), str(algorithm), int(horizon), created_at,
        as_of, trained_from, trained_to, int(n_leads), int(n_pos), int(n_neg), dict(metrics),
        features, dict(params),
    )  # fmt: skip
    if method == "prior":
        stored.prior = Prior.from_dict(params["prior"])
        return stored
    blob = bytes(artifact or b"")
    if not blob or hashlib.sha256(blob).hexdigest() != sha:
        raise UsageError(
            f"Model {version}'s parameters do not match their checksum; retrain it with "
            "'aicrm ai train'."
        )
    try:
        stored.scorer = M.Scorer.from_npz(str(algorithm), blob)
    except (ValueError, KeyError, OSError) as exc:
        raise UsageError(
            f"Model {version}'s parameters cannot be read ({exc}); retrain it."
        ) from None
    return stored


def list_models(conn: Connection) -> list[dict[str, Any]]:
    with session.transaction(conn):
        require_schema(conn)
        rows = conn.execute(
            f"SELECT {MODEL_COLUMNS}, active FROM ai_models WHERE kind = %s "  # noqa: S608
            "ORDER BY created_at DESC, id DESC",
            (KIND,),
        ).fetchall()
    out = []
    for row in rows:
        out.append(
            {
                "version": row[1],
                "method": row[2],
                "algorithm": row[3],
                "horizon_days": row[4],
                "created_at": row[5].isoformat(),
                "leads": row[9],
                "conversions": row[10],
                "auc": row[12].get("auc"),
                "active": row[-1],
            }
        )
    return out


# --- training ----------------------------------------------------------------------


@dataclass
class TrainResult:
    model: StoredModel
    candidates: list[dict[str, Any]]
    seconds: float
    observations: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return self.model.summary() | {
            "candidates": self.candidates,
            "observations": self.observations,
            "seconds": round(self.seconds, 2),
            "notes": self.notes,
        }


LABEL_COUNTS = """
SELECT count(*) AS n,
       count(*) FILTER (WHERE l.conversion_date IS NOT NULL
                        AND l.conversion_date <= l.created_at + %(horizon)s * interval '1 day'),
       min(l.created_at), max(l.created_at),
       (SELECT count(*) FROM leads)
FROM leads l
WHERE l.created_at >= %(since)s AND l.created_at + %(horizon)s * interval '1 day' <= %(as_of)s
  AND (l.conversion_date IS NULL OR l.conversion_date >= l.created_at)
"""


def train(
    conn: Connection,
    *,
    horizon: int = HORIZON,
    as_of: datetime | None = None,
    since: datetime | None = None,
    landmarks: Sequence[int] = LANDMARKS,
    min_labelled: int = MIN_LABELLED,
    min_conversions: int = MIN_CONVERSIONS,
    force_prior: bool = False,
    activate: bool = True,
    seed: int = 0,
    actor: str | None = None,
    progress: Progress = _quiet,
) -> TrainResult:
    """Learn from the CRM's history and store the model (active unless told not).

    Raises :class:`UsageError` when no lead is old enough to be a label (an empty
    CRM, or one younger than the horizon). Falls back to the prior below the data
    minimum, and says why in ``notes``."""
    if horizon < 1 or horizon > 3650:
        raise InvalidInput(f"The horizon must be between 1 and 3650 days, not {horizon}.")
    if any(w < 0 for w in landmarks) or 0 not in landmarks:
        raise InvalidInput("Landmarks are days after creation, ≥ 0, and must include 0.")
    # One transaction: every query sees the same snapshot, and the model is stored
    # with it (or not at all).
    with session.transaction(conn, actor):
        return _train(
            conn, horizon, as_of, since, landmarks, min_labelled, min_conversions,
            force_prior, activate, seed, actor, progress,
        )  # fmt: skip


def _train(
    conn: Connection,
    horizon: int,
    as_of: datetime | None,
    since: datetime | None,
    landmarks: Sequence[int],
    min_labelled: int,
    min_conversions: int,
    force_prior: bool,
    activate: bool,
    seed: int,
    actor: str | None,
    progress: Progress,
) -> TrainResult:
    require_schema(conn)
    started = time.perf_counter()
    moment = as_of or _now(conn)
    start = since or datetime(1, 1, 1, tzinfo=UTC)
    window = {"horizon": horizon, "as_of": moment, "since": start}
    row = conn.execute(LABEL_COUNTS, window).fetchone()
    assert row is not None
    n, positives, first, last, total = (row[0], row[1], row[2], row[3], row[4])
    negatives = n - positives
    if total == 0:
        raise UsageError("The CRM has no leads yet: there is nothing to learn from.")
    if n == 0:
        raise UsageError(
            f"No lead is old enough to learn from: a lead is an example once {horizon} days "
            f"have passed since its creation, and none of the {total} leads was created before "
            f"{(moment - _days(horizon)):%Y-%m-%d}. Score with a shorter --horizon, or wait."
        )
    notes: list[str] = []
    reason = None
    if force_prior:
        reason = "the prior was asked for"
    elif positives == 0:
        reason = f"none of the {n} labelled leads converted within {horizon} days"
    elif n < min_labelled or positives < min_conversions or negatives < min_conversions:
        reason = (
            f"{n} labelled leads with {positives} conversions is below the minimum of "
            f"{min_labelled} leads with {min_conversions} conversions and {min_conversions} "
            "non-conversions"
        )
    if reason is not None:
        notes.append(f"Scores are a smoothed prior by source and segment: {reason}.")
        model, candidates, observations = _train_prior(conn, window, progress)
    else:
        model, candidates, observations = _train_model(
            conn, window, landmarks, seed, progress, notes
        )
    model.horizon = horizon
    model.as_of = moment
    model.trained_from = first
    model.trained_to = last
    model.n_leads, model.n_positive, model.n_negative = int(n), int(positives), int(negatives)
    _save(conn, model, activate=activate, actor=actor)
    return TrainResult(model, candidates, time.perf_counter() - started, observations, notes)


def _days(n: float) -> Any:
    from datetime import timedelta

    return timedelta(days=n)


def _now(conn: Connection) -> datetime:
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    value: datetime = row[0]
    return value


def _blank(
    method: str, algorithm: str, features: list[F.Feature], params: dict[str, Any]
) -> StoredModel:
    now = datetime.now(UTC)
    return StoredModel(
        0, "", method, algorithm, HORIZON, now, now, None, None, 0, 0, 0, {}, features, params
    )


def prior_features(segment_key: str | None) -> list[F.Feature]:
    found = [F.Feature("source", "category")]
    if segment_key is not None:
        found.append(F.Feature(f"attr:{segment_key}", "category", key=segment_key))
    return found


def _prior_inputs(
    features: list[F.Feature], frame: F.Frame
) -> tuple[list[str | None], list[str | None]]:
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


def _train_prior(
    conn: Connection, window: dict[str, Any], progress: Progress
) -> tuple[StoredModel, list[dict[str, Any]], int]:
    progress("computing the smoothed conversion rates")
    segment_key = _segment_key(conn, window)
    features = prior_features(segment_key)
    for feature in features:
        feature.categories = _all_values(conn, feature, window)
    frame = F.training_frame(
        conn, features, horizon=window["horizon"], as_of=window["as_of"],
        since=window["since"], landmarks=[0],
    )  # fmt: skip
    assert frame.labels is not None
    sources, segments = _prior_inputs(features, frame)
    prior = Prior.fit(sources, segments, frame.labels.tolist(), segment_key)
    p, _c, _conf = prior.predict(sources, segments)
    y = frame.labels
    table = M.calibration_table(y, p)
    metrics = {
        "auc": M.auc(y, p), "brier": M.brier(y, p), "log_loss": M.log_loss(y, p),
        "calibration_error": M.calibration_error(table), "evaluated_on": "training leads",
    }  # fmt: skip
    metrics = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in metrics.items()}
    params = {
        "prior": prior.to_dict(),
        "tier_cutoffs": _cutoffs(p),
        "calibration": table,
        "segment_key": segment_key,
    }
    model = _blank("prior", "smoothed_rates", features, params)
    model.metrics = metrics
    model.prior = prior
    return model, [{"name": "smoothed_rates", "metrics": metrics}], len(frame)


def _segment_key(conn: Connection, window: dict[str, Any]) -> str | None:
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE jsonb_typeof(l.attributes -> %(key)s) = 'string'), "
        "count(*) FROM leads l WHERE l.created_at >= %(since)s "
        "AND l.created_at + %(horizon)s * interval '1 day' <= %(as_of)s",
        window | {"key": SEGMENT_KEY},
    ).fetchone()
    return SEGMENT_KEY if row and row[1] and row[0] >= 0.5 * row[1] else None


DISTINCT_VALUES = (
    "SELECT DISTINCT ({expr})::text AS v FROM leads l WHERE l.created_at >= %(since)s "
    "AND l.created_at + %(horizon)s * interval '1 day' <= %(as_of)s ORDER BY 1"
)


def _all_values(conn: Connection, feature: F.Feature, window: dict[str, Any]) -> list[str]:
    from psycopg import sql

    expr = F.attribute_expr(feature) if feature.key is not None else F.BUILTIN[feature.name][1]
    params = {F._param(feature): feature.key} if feature.key is not None else {}
    # the expression is this package's own SQL (features.BUILTIN); values are parameters
    query = sql.SQL(DISTINCT_VALUES).format(expr=sql.SQL(expr))
    return [str(r[0]) for r in conn.execute(query, params | window).fetchall() if r[0] is not None]


def _cutoffs(p: npt.NDArray[np.float64]) -> list[float]:
    if not len(p):
        return [1.0, 1.0, 1.0]
    shares = np.cumsum(TIER_SHARES)
    return [round(float(np.quantile(p, 1 - s)), 6) for s in shares]


def _train_model(
    conn: Connection,
    window: dict[str, Any],
    landmarks: Sequence[int],
    seed: int,
    progress: Progress,
    notes: list[str],
) -> tuple[StoredModel, list[dict[str, Any]], int]:
    progress("finding the features")
    labelled = conn.execute(
        "SELECT count(*) FROM leads l WHERE l.created_at >= %(since)s "
        "AND l.created_at + %(horizon)s * interval '1 day' <= %(as_of)s",
        window,
    ).fetchone()
    n_leads = int(labelled[0]) if labelled else 0
    features = F.discover(
        conn, horizon=window["horizon"], as_of=window["as_of"], since=window["since"],
        n_leads=n_leads,
    )  # fmt: skip
    progress("reading the training observations")
    frame = F.training_frame(
        conn, features, horizon=window["horizon"], as_of=window["as_of"],
        since=window["since"], landmarks=landmarks,
    )  # fmt: skip
    assert frame.labels is not None
    encoding = F.fit_encoding(features, frame.values)
    x = F.encode(features, encoding, frame.values)
    y = frame.labels
    first = frame.landmarks == 0
    used = {c.feature for c in encoding.columns}
    dropped = [f.name for f in features if f.name not in used]
    if dropped:
        notes.append(f"Left out (the same for every lead): {', '.join(dropped)}.")
    scorer, candidates, best, final = M.select(
        x, y, frame.groups, first, seed=seed, progress=progress
    )
    p0 = scorer.predict(x[first])
    params = {
        "encoding": encoding.to_dict(),
        "tier_cutoffs": _cutoffs(p0),
        "calibration": final.pop("calibration"),
        "platt": [scorer.a, scorer.b],
        "landmarks": list(landmarks),
        "base_rate": round(float(np.mean(y[first])), 6),
    }
    model = _blank("model", scorer.algorithm, features, params)
    model.metrics = final | {
        "evaluated_on": f"{M.FOLDS}-fold cross-validation by lead, at creation",
        "chosen": {"name": best.name, **best.params},
    }
    model.scorer = scorer
    cands = [{"name": c.name, "params": c.params, "metrics": c.metrics, "chosen": c is best}
             for c in candidates]  # fmt: skip
    params["candidates"] = cands
    return model, cands, len(frame)


def _save(conn: Connection, model: StoredModel, *, activate: bool, actor: str | None) -> None:
    blob = model.scorer.to_npz() if model.scorer is not None else None
    sha = hashlib.sha256(blob).hexdigest() if blob is not None else None
    model.version = f"ls-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
    model.params["feature_set"] = F.FEATURE_SET
    model.params["lead_columns"] = F.lead_columns_used(model.features)
    with session.transaction(conn, actor):
        if activate:
            conn.execute("UPDATE ai_models SET active = false WHERE kind = %s AND active", (KIND,))
        row = conn.execute(
            "INSERT INTO ai_models (kind, version, method, algorithm, active, horizon_days, "
            "trained_from, trained_to, as_of, n_leads, n_positive, n_negative, metrics, features, "
            "params, artifact, artifact_format, artifact_sha256) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "RETURNING id, created_at",
            (
                KIND,
                model.version,
                model.method,
                model.algorithm,
                activate,
                model.horizon,
                model.trained_from,
                model.trained_to,
                model.as_of,
                model.n_leads,
                model.n_positive,
                model.n_negative,
                Jsonb(_json_safe(model.metrics)),
                Jsonb([f.to_dict() | {"label": f.label} for f in model.features]),
                Jsonb(_json_safe(model.params)),
                blob,
                "npz" if blob is not None else None,
                sha,
            ),
        ).fetchone()
    assert row is not None
    model.id, model.created_at = int(row[0]), row[1]


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.floating | np.integer):
        return _json_safe(value.item())
    return value


# --- predicting with a stored model ------------------------------------------------


@dataclass
class Predictions:
    """Scores of a frame's rows, their per-feature contributions and readable values."""

    scores: npt.NDArray[np.float64]
    tiers: npt.NDArray[np.int64]  # 1..4 for A..D
    confidence: npt.NDArray[np.float64]
    bias: float
    groups: list[F.Feature]  # the factors contributions are split into
    contributions: npt.NDArray[np.float64]  # (n, len(groups)), calibrated log-odds
    warnings: list[str] = field(default_factory=list)


def _attributes_seen(stored: StoredModel, values: npt.NDArray[np.float64]) -> set[str]:
    """The attribute keys of the model that at least one of these rows has."""
    seen = set()
    for j, feature in enumerate(stored.features):
        if feature.key is not None:
            col = values[:, j]
            missing = np.isnan(col) | (col == 0) if feature.kind == "category" else np.isnan(col)
            if not np.all(missing):
                seen.add(feature.key)
    return seen


def _missing_warnings(stored: StoredModel, seen: set[str], n: int) -> list[str]:
    if n < 50:  # a lead may lack an attribute; all of many may not
        return []
    return [
        f"No lead has the attribute '{f.key}' the model was trained with; it counts as unknown."
        for f in stored.features
        if f.key is not None and f.key not in seen
    ]


def predict(stored: StoredModel, frame: F.Frame, *, check: bool = True) -> Predictions:
    """Scores, tiers and per-feature contributions of the frame's rows; with
    ``check``, a warning for each attribute of the model that no row has."""
    warnings = (
        _missing_warnings(stored, _attributes_seen(stored, frame.values), len(frame))
        if check
        else []
    )
    if stored.prior is not None:
        sources, segments = _prior_inputs(stored.features, frame)
        p, contrib, conf = stored.prior.predict(sources, segments)
        bias = _logit(stored.prior.overall)
        groups = stored.features[: contrib.shape[1]]
        if len(groups) < contrib.shape[1]:
            contrib = contrib[:, : len(groups)]
    else:
        assert stored.scorer is not None
        encoding = stored.encoding
        x = F.encode(stored.features, encoding, frame.values)
        names = [f.name for f in stored.features]
        used = [n for n in names if any(c.feature == n for c in encoding.columns)]
        groups = [f for f in stored.features if f.name in used]
        index = {f.name: g for g, f in enumerate(groups)}
        combine = np.zeros((len(encoding.columns), len(groups)))
        for k, column in enumerate(encoding.columns):
            combine[k, index[column.feature]] = 1.0
        contrib, bias = stored.scorer.explain(x, combine)
        p = M.sigmoid(contrib.sum(axis=1) + bias)
        conf = np.full(len(frame), stored.confidence)
    cutoffs = stored.cutoffs
    tiers = np.where(
        p >= cutoffs[0], 1, np.where(p >= cutoffs[1], 2, np.where(p >= cutoffs[2], 3, 4))
    ).astype(np.int64)
    return Predictions(p, tiers, conf, float(bias), groups, contrib, warnings)


# --- scoring in bulk ---------------------------------------------------------------


@dataclass
class ScoreResult:
    version: str
    method: str
    scored: int
    tiers: dict[str, int]
    seconds: float
    timings: dict[str, float]
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_version": self.version, "method": self.method, "scored": self.scored,
            "tiers": self.tiers, "seconds": round(self.seconds, 3),
            "leads_per_second": round(self.scored / self.seconds) if self.seconds > 0 else None,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "warnings": self.warnings,
        }  # fmt: skip


STAGING = "aicrm_scoring_staging"


def score(
    conn: Connection,
    *,
    lead_ids: Sequence[str] | None = None,
    include_converted: bool = False,
    as_of: datetime | None = None,
    top: int = TOP_FACTORS,
    actor: str | None = None,
    progress: Progress = _quiet,
) -> ScoreResult:
    """Score open leads (or the given ones, converted included) with the active model
    and write ``ai_score`` and the ``lead_scoring`` annotation back, set-based."""
    if not 1 <= top <= 10:
        raise InvalidInput("The number of factors to keep must be between 1 and 10.")
    keys = [str(ids.parse(i, "lead id")) for i in lead_ids] if lead_ids is not None else None
    with session.transaction(conn, actor):
        return _score(conn, keys, include_converted, as_of, top, actor, progress)


CHUNK = 65_536  # leads per frame: predicted while PostgreSQL computes the next ones


def _score(
    conn: Connection,
    keys: list[str] | None,
    include_converted: bool,
    as_of: datetime | None,
    top: int,
    actor: str | None,
    progress: Progress,
) -> ScoreResult:
    started = time.perf_counter()
    stored = load_active(conn)
    moment = as_of or _now(conn)
    progress("reading the leads' features and scoring them")
    frames: Iterator[F.Frame]
    if keys is None:
        frames = F.scoring_frames(
            conn, stored.features, as_of=moment, include_converted=include_converted,
            rows=CHUNK,
        )  # fmt: skip
    else:
        frames = iter([F.scoring_frame(conn, stored.features, as_of=moment, lead_ids=keys,
                                       include_converted=True)])  # fmt: skip
    terms = _terms(stored)
    head = _entry_head(stored, as_of)
    rows: list[Staged] = []
    tiers = np.zeros(len(TIERS), dtype=np.int64)
    seen: set[str] = set()
    found: list[str] = []
    n = 0
    predicting = 0.0
    for frame in frames:  # PostgreSQL computes the next frame meanwhile
        mark = time.perf_counter()
        pred = predict(stored, frame, check=False)
        seen |= _attributes_seen(stored, frame.values)
        rows.append(_staging_rows(stored, frame, pred, top, terms, head))
        tiers += np.bincount(pred.tiers - 1, minlength=len(TIERS))
        if keys is not None:
            found += frame.lead_ids
        n += len(frame)
        predicting += time.perf_counter() - mark
    if keys is not None and n < len(set(keys)):
        missing = sorted(set(keys) - set(found))
        raise NotFound(
            f"No lead has id {missing[0]}."
            if len(missing) == 1
            else f"{len(missing)} of the leads do not exist (e.g. {missing[0]})."
        )
    timings = {"read": time.perf_counter() - started, "predict": predicting}
    mark = time.perf_counter()
    progress(f"writing {n} scores")
    _write_back(conn, rows, actor)
    timings["write"] = time.perf_counter() - mark
    counts = {t: int(tiers[i]) for i, t in enumerate(TIERS)}
    return ScoreResult(
        stored.version, stored.method, n, counts, time.perf_counter() - started, timings,
        _missing_warnings(stored, seen, n),
    )  # fmt: skip


@dataclass
class Terms:
    """The factor vocabulary: term number (1-based) -> feature name, label, fixed value
    text (None: the value travels as a number); ``index`` maps (group, code) to it."""

    names: list[str]
    labels: list[str]
    values: list[str | None]
    index: dict[tuple[int, int], int]


def _groups(stored: StoredModel) -> list[F.Feature]:
    """The features contributions are split into (those the model reads)."""
    if stored.prior is not None:
        return stored.features[:2]
    used = {c.feature for c in stored.encoding.columns}
    return [f for f in stored.features if f.name in used]


def _terms(stored: StoredModel) -> Terms:
    """The factor vocabulary: a numeric factor has one term per feature (its value
    travels as a number); a category has one term per value."""
    names: list[str] = []
    labels: list[str] = []
    values: list[str | None] = []
    index: dict[tuple[int, int], int] = {}
    for g, feature in enumerate(_groups(stored)):
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


def _factor_table(
    stored: StoredModel, frame: F.Frame, pred: Predictions, top: int, terms: Terms
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


def _staging_rows(
    stored: StoredModel,
    frame: F.Frame,
    pred: Predictions,
    top: int,
    terms: Terms,
    head: tuple[str, str],
) -> Staged:
    """The frame's rows of the staging table in COPY text format: id, score and the
    annotator's entry as JSON, factors as ``[feature, value, contribution]`` (the parts
    common to every lead, ``head``, made once by :func:`_entry_head`)."""
    term, value, contribution = _factor_table(stored, frame, pred, top, terms)
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


def _entry_head(stored: StoredModel, as_of: datetime | None) -> tuple[str, str]:
    """The JSON text of the entry before its confidence, and of its values before the
    score: the same for every lead of a run. ``as_of`` is written only when scoring
    was asked for another moment than now (``produced_at`` says when otherwise)."""
    produced = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    start = (
        f'{{"model": {_json(KIND)}, "version": {_json(stored.version)}, '
        f'"produced_at": "{produced}", '
    )
    horizon, method = int(stored.horizon), _json(stored.method)
    middle = f'"values": {{"horizon_days": {horizon}, "method": {method}, '
    if as_of is not None:
        middle += f'"as_of": {_json(as_of.isoformat())}, '
    return start, middle


def stored_factors(values: Any) -> list[dict[str, Any]]:
    """The factors of a stored ``lead_scoring`` entry's ``values``, readable: each a
    dict with ``feature``, ``label``, ``value`` and ``contribution``, largest effect
    first. Reads the compact form bulk scoring writes (``[feature, value,
    contribution]``) and the older one (a dict per factor, label included); anything
    else is left out."""
    found = values.get("factors") if isinstance(values, dict) else None
    out: list[dict[str, Any]] = []
    for item in found if isinstance(found, list) else []:
        if isinstance(item, dict) and "feature" in item:
            out.append({"label": factor_label(str(item["feature"]))} | item)
        elif isinstance(item, list) and len(item) == 3 and isinstance(item[0], str):
            feature, value, contribution = item
            if isinstance(contribution, int | float):
                out.append(
                    {"feature": feature, "label": factor_label(feature), "value": value,
                     "contribution": float(contribution)}
                )  # fmt: skip
    return out


def factor_label(name: str) -> str:
    """The label of a feature from its name alone (no model needed): the built-in
    labels, and ``attr:company_size`` -> "Company size"."""
    if name.startswith("attr:"):
        return F.Feature(name, "numeric", key=name[5:]).label
    return F.LABELS.get(name, name)


def readable(entry: Any) -> Any:
    """A stored ``lead_scoring`` entry with its compact factors spelled out (see
    :func:`stored_factors`); anything that is not an entry is returned as it is."""
    if not isinstance(entry, dict) or not isinstance(entry.get("values"), dict):
        return entry
    values = entry["values"]
    if "factors" not in values:
        return entry
    return entry | {"values": values | {"factors": stored_factors(values)}}


def _write_back(conn: Connection, staged: Sequence[Staged], actor: str | None) -> None:
    """One COPY of the staging rows, in the order the leads lie in the table, into a
    temporary table; then one UPDATE of leads that sets ai_score and merges the
    annotation in SQL."""
    from psycopg import sql

    positions = np.concatenate([s.positions for s in staged]) if staged else np.zeros(0)
    lines = [line for s in staged for line in s.lines]
    order = np.argsort(positions, kind="stable").tolist()
    with session.transaction(conn, actor):
        conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {} (id uuid NOT NULL, score float8 NOT NULL, "
                "entry jsonb NOT NULL) ON COMMIT DROP"
            ).format(sql.Identifier(STAGING))
        )
        with conn.cursor().copy(
            sql.SQL("COPY {} (id, score, entry) FROM STDIN").format(sql.Identifier(STAGING))
        ) as copy:
            step = 20_000
            for begin in range(0, len(order), step):
                copy.write("".join([lines[i] for i in order[begin : begin + step]]))
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(STAGING)))
        # room for a hash table: one pass over leads, the staging rows in its order
        memory = conn.execute("SELECT current_setting('work_mem')").fetchone()
        conn.execute("SET LOCAL work_mem = '256MB'")
        conn.execute(
            sql.SQL(WRITE_BACK).format(staging=sql.Identifier(STAGING)), {"annotator": ANNOTATOR}
        )
        if memory is not None:
            conn.execute("SELECT set_config('work_mem', %s, true)", (memory[0],))


# --- explaining one lead -----------------------------------------------------------


@dataclass
class Factor:
    feature: str
    label: str
    value: Any
    contribution: float

    @property
    def words(self) -> str:
        odds = math.exp(self.contribution)
        what = f"{self.label}: {_shown(self.value)}"
        if abs(self.contribution) < 0.01:
            return f"{what} — no effect"
        direction = "raises" if self.contribution > 0 else "lowers"
        return f"{what} — {direction} the odds ×{odds:.2f}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature, "label": self.label, "value": _json_safe(self.value),
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


@dataclass
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "lead_id": self.lead_id, "name": self.name, "status": self.status,
            "is_converted": self.is_converted, "score": round(self.score, 4), "tier": self.tier,
            "method": self.method, "model_version": self.version, "horizon_days": self.horizon,
            "base_rate": round(self.base_rate, 4), "bias_log_odds": round(self.bias, 4),
            "factors": [f.to_dict() for f in self.factors], "stored_annotation": self.stored,
            "warnings": self.warnings,
        }  # fmt: skip


def explain(conn: Connection, lead_id: str, *, as_of: datetime | None = None) -> Explanation:
    """Why the active model gives this lead its score: every factor's contribution,
    largest first, computed now (the stored annotation is shown alongside)."""
    key = str(ids.parse(lead_id, "lead id"))
    with session.transaction(conn):
        return _explain(conn, key, as_of)


def _explain(conn: Connection, key: str, as_of: datetime | None) -> Explanation:
    stored = load_active(conn)
    row = conn.execute(
        "SELECT coalesce(nullif(btrim(concat_ws(' ', first_name, last_name)), ''), company_name, "
        "email, id::text), status, is_converted, ai_annotations -> %s FROM leads WHERE id = %s",
        (ANNOTATOR, key),
    ).fetchone()
    if row is None:
        raise NotFound(f"No lead has id {key}.")
    moment = as_of or _now(conn)
    frame = F.scoring_frame(conn, stored.features, as_of=moment, lead_ids=[key],
                            include_converted=True)  # fmt: skip
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
    base_rate = float(stored.params.get("base_rate", M.sigmoid(np.array([pred.bias]))[0]))
    if stored.prior is not None:
        base_rate = stored.prior.overall
    return Explanation(
        key, str(row[0]), str(row[1]), bool(row[2]), float(pred.scores[0]),
        TIERS[int(pred.tiers[0]) - 1], stored.method, stored.version, stored.horizon, base_rate,
        pred.bias, factors, readable(row[3]), pred.warnings,
    )  # fmt: skip
