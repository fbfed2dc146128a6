"""Training a lead-scoring model on the CRM's history, or the prior below the minimum.

Training examples are leads observed at their creation (and, while still open, at
one later *landmark*), labelled 1 when they converted within the horizon after that
moment; only observations whose horizon has fully passed count (:mod:`aicrm.ai.window`).
Below the data minimum (:data:`MIN_LABELLED` labelled leads with at least
:data:`MIN_CONVERSIONS` conversions and as many non-conversions) no model is fit: the
score is the transparent prior (:mod:`aicrm.ai.prior`). See docs/lead-scoring.md.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from aicrm.ai import model as learn
from aicrm.ai.annotations import require_schema
from aicrm.ai.bulk import Progress, quiet
from aicrm.ai.features import discover, encode, fit_encoding, training_frame
from aicrm.ai.prediction import tier_cutoffs
from aicrm.ai.prior import Prior, all_values, prior_features, prior_inputs, segment_key
from aicrm.ai.store import StoredModel, save
from aicrm.ai.window import EPOCH, Window, labelled_query, server_now
from aicrm.crm import session
from aicrm.db import Connection
from aicrm.errors import InvalidInput, UsageError

HORIZON = 90
LANDMARKS = (0, 30, 90, 180, 365)
MIN_LABELLED = 200
MIN_CONVERSIONS = 25

# The labelled leads of the window, their conversions within the horizon, the first
# and last creation among them, and every lead of the CRM.
LABEL_COUNTS = """
SELECT count(*) AS n,
       count(*) FILTER (WHERE l.conversion_date IS NOT NULL
                        AND l.conversion_date <= l.created_at + %(horizon)s * interval '1 day'),
       min(l.created_at), max(l.created_at),
       (SELECT count(*) FROM leads)
FROM leads l
WHERE {labelled} AND (l.conversion_date IS NULL OR l.conversion_date >= l.created_at)
"""
LABELLED_LEADS = "SELECT count(*) FROM leads l WHERE {labelled}"


@dataclass(kw_only=True)
class TrainResult:
    """What :func:`train` stored, and how it got there."""

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


@dataclass(frozen=True, kw_only=True)
class Options:
    """How to train (the keyword arguments of :func:`train`)."""

    landmarks: Sequence[int] = LANDMARKS
    min_labelled: int = MIN_LABELLED
    min_conversions: int = MIN_CONVERSIONS
    force_prior: bool = False
    activate: bool = True
    seed: int = 0
    actor: str | None = None


@dataclass(frozen=True)
class LabelCounts:
    """The labelled leads of a window (a row of :data:`LABEL_COUNTS`)."""

    n: int
    positives: int
    first: datetime | None
    last: datetime | None
    total: int

    @property
    def negatives(self) -> int:
        return self.n - self.positives


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
    progress: Progress = quiet,
) -> TrainResult:
    """Learn from the CRM's history and store the model (active unless told not).

    Raises :class:`UsageError` when no lead is old enough to be a label (an empty
    CRM, or one younger than the horizon). Falls back to the prior below the data
    minimum, and says why in ``notes``."""
    if horizon < 1 or horizon > 3650:
        raise InvalidInput(f"The horizon must be between 1 and 3650 days, not {horizon}.")
    if any(w < 0 for w in landmarks) or 0 not in landmarks:
        raise InvalidInput("Landmarks are days after creation, ≥ 0, and must include 0.")
    options = Options(
        landmarks=tuple(landmarks),
        min_labelled=min_labelled,
        min_conversions=min_conversions,
        force_prior=force_prior,
        activate=activate,
        seed=seed,
        actor=actor,
    )
    # One transaction: every query sees the same snapshot, and the model is stored
    # with it (or not at all).
    with session.transaction(conn, actor):
        require_schema(conn)
        window = Window(horizon, as_of or server_now(conn), since or EPOCH)
        return _train(conn, window, options, progress)


def count_labels(conn: Connection, window: Window) -> LabelCounts:
    """How many leads the window labels, and how many of them converted."""
    row = conn.execute(labelled_query(LABEL_COUNTS), window.params()).fetchone()
    assert row is not None
    return LabelCounts(int(row[0]), int(row[1]), row[2], row[3], int(row[4]))


def _train(conn: Connection, window: Window, options: Options, progress: Progress) -> TrainResult:
    started = time.perf_counter()
    counts = count_labels(conn, window)
    if counts.total == 0:
        raise UsageError("The CRM has no leads yet: there is nothing to learn from.")
    if counts.n == 0:
        raise UsageError(
            f"No lead is old enough to learn from: a lead is an example once {window.horizon} "
            f"days have passed since its creation, and none of the {counts.total} leads was "
            f"created before {window.last_creation:%Y-%m-%d}. Score with a shorter --horizon, "
            "or wait."
        )
    notes: list[str] = []
    reason = _prior_reason(counts, window, options)
    if reason is not None:
        notes.append(f"Scores are a smoothed prior by source and segment: {reason}.")
        model, candidates, observations = _train_prior(conn, window, progress)
    else:
        model, candidates, observations = _train_model(conn, window, options, progress, notes)
    model.horizon = window.horizon
    model.as_of = window.as_of
    model.trained_from = counts.first
    model.trained_to = counts.last
    model.n_leads, model.n_positive, model.n_negative = counts.n, counts.positives, counts.negatives
    save(conn, model, activate=options.activate, actor=options.actor)
    return TrainResult(
        model=model,
        candidates=candidates,
        seconds=time.perf_counter() - started,
        observations=observations,
        notes=notes,
    )


def _prior_reason(counts: LabelCounts, window: Window, options: Options) -> str | None:
    """Why no model is fit (None: one is)."""
    if options.force_prior:
        return "the prior was asked for"
    if counts.positives == 0:
        return f"none of the {counts.n} labelled leads converted within {window.horizon} days"
    minimum = options.min_conversions
    if counts.n < options.min_labelled or counts.positives < minimum or counts.negatives < minimum:
        return (
            f"{counts.n} labelled leads with {counts.positives} conversions is below the "
            f"minimum of {options.min_labelled} leads with {minimum} conversions and {minimum} "
            "non-conversions"
        )
    return None


def _rounded(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in metrics.items()}


def _train_prior(
    conn: Connection, window: Window, progress: Progress
) -> tuple[StoredModel, list[dict[str, Any]], int]:
    progress("computing the smoothed conversion rates")
    key = segment_key(conn, window)
    features = prior_features(key)
    for feature in features:
        feature.categories = all_values(conn, feature, window)
    frame = training_frame(
        conn,
        features,
        horizon=window.horizon,
        as_of=window.as_of,
        since=window.since,
        landmarks=[0],
    )
    assert frame.labels is not None
    sources, segments = prior_inputs(features, frame)
    y = frame.labels
    prior = Prior.fit(sources, segments, y.tolist(), key)
    p, _contributions, _confidence = prior.predict(sources, segments)
    table = learn.calibration_table(y, p)
    metrics = _rounded(
        {
            "auc": learn.auc(y, p),
            "brier": learn.brier(y, p),
            "log_loss": learn.log_loss(y, p),
            "calibration_error": learn.calibration_error(table),
            "evaluated_on": "training leads",
        }
    )
    params = {
        "prior": prior.to_dict(),
        "tier_cutoffs": tier_cutoffs(p),
        "calibration": table,
        "segment_key": key,
    }
    model = StoredModel(
        method="prior",
        algorithm="smoothed_rates",
        horizon=window.horizon,
        features=features,
        params=params,
        metrics=metrics,
        prior=prior,
    )
    return model, [{"name": "smoothed_rates", "metrics": metrics}], len(frame)


def _train_model(
    conn: Connection, window: Window, options: Options, progress: Progress, notes: list[str]
) -> tuple[StoredModel, list[dict[str, Any]], int]:
    progress("finding the features")
    labelled = conn.execute(labelled_query(LABELLED_LEADS), window.params()).fetchone()
    n_leads = int(labelled[0]) if labelled else 0
    features = discover(
        conn, horizon=window.horizon, as_of=window.as_of, since=window.since, n_leads=n_leads
    )
    progress("reading the training observations")
    frame = training_frame(
        conn,
        features,
        horizon=window.horizon,
        as_of=window.as_of,
        since=window.since,
        landmarks=options.landmarks,
    )
    assert frame.labels is not None
    encoding = fit_encoding(features, frame.values)
    x = encode(features, encoding, frame.values)
    y = frame.labels
    first = frame.landmarks == 0
    used = {c.feature for c in encoding.columns}
    dropped = [f.name for f in features if f.name not in used]
    if dropped:
        notes.append(f"Left out (the same for every lead): {', '.join(dropped)}.")
    scorer, candidates, best, final = learn.select(
        x, y, frame.groups, first, seed=options.seed, progress=progress
    )
    p0 = scorer.predict(x[first])
    params: dict[str, Any] = {
        "encoding": encoding.to_dict(),
        "tier_cutoffs": tier_cutoffs(p0),
        "calibration": final.pop("calibration"),
        "platt": [scorer.a, scorer.b],
        "landmarks": list(options.landmarks),
        "base_rate": round(float(np.mean(y[first])), 6),
    }
    cands = [
        {"name": c.name, "params": c.params, "metrics": c.metrics, "chosen": c is best}
        for c in candidates
    ]
    params["candidates"] = cands
    model = StoredModel(
        method="model",
        algorithm=scorer.algorithm,
        horizon=window.horizon,
        features=features,
        params=params,
        metrics=final
        | {
            "evaluated_on": f"{learn.FOLDS}-fold cross-validation by lead, at creation",
            "chosen": {"name": best.name, **best.params},
        },
        scorer=scorer,
    )
    return model, cands, len(frame)
