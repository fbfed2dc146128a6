"""Training a lead-scoring model on the CRM's history, or the prior below the minimum.

Training examples are leads observed at their creation (and, while still open, at
one later *landmark*), labelled 1 when they converted within the horizon after that
moment; only observations whose horizon has fully passed count (:mod:`aicrm.ai._window`).
Below the data minimum (:data:`MIN_LABELLED` labelled leads with at least
:data:`MIN_CONVERSIONS` conversions and as many non-conversions) no model is fit: the
score is the transparent prior (:mod:`aicrm.ai._prior`). See docs/lead-scoring.md.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from psycopg import sql

from aicrm.ai import _model as learn
from aicrm.ai._bulk import Progress, quiet
from aicrm.ai._features import (
    Feature,
    Frame,
    creation_frame,
    discover,
    encode,
    fit_encoding,
    training_frame,
)
from aicrm.ai._gate import Verdict, holdout_ids, judge, leakage_alarm, rows_of
from aicrm.ai._prediction import predict, tier_cutoffs
from aicrm.ai._prior import Prior, all_values, prior_features, prior_inputs, segment_key
from aicrm.ai._replay import calibrate
from aicrm.ai._store import StoredModel, active_or_none, save
from aicrm.ai._window import EPOCH, Window, labelled_query, server_now
from aicrm.ai.annotations import require_schema
from aicrm.crm import session
from aicrm.db import Connection
from aicrm.db.errors import translated
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
    # the version active after training: the new model's, the prior stored instead
    # (the gate refused the model and none was active), or the one active before
    active_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return self.model.summary() | {
            "candidates": self.candidates,
            "observations": self.observations,
            "seconds": round(self.seconds, 2),
            "notes": self.notes,
            "gate": self.model.params.get("gate"),
            "active_version": self.active_version,
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
    exclude: tuple[str, ...] = ()


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


@translated()
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
    exclude: Sequence[str] = (),
    progress: Progress = quiet,
) -> TrainResult:
    """Learn from the CRM's history and store the model.

    A trained model is active (unless ``activate`` is false) only when it passes the
    publish gate (:mod:`aicrm.ai._gate`); otherwise it is stored inactive with the
    reason, and when no model was active the prior is stored active instead.
    ``exclude`` names features to leave out. Raises :class:`UsageError` when no lead
    is old enough to be a label (an empty CRM, or one younger than the horizon) and
    when the leakage alarm goes off. Falls back to the prior below the data minimum,
    and says why in ``notes``."""
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
        exclude=tuple(exclude),
    )
    # One transaction: every query sees the same snapshot, and the model is stored
    # with it (or not at all).
    with session.transaction(conn, actor):
        require_schema(conn)
        window = Window(horizon, as_of or server_now(conn), since or EPOCH)
        return _train(conn, window, options, progress)


@translated()
def count_labels(conn: Connection, window: Window) -> LabelCounts:
    """How many leads the window labels, and how many of them converted."""
    row = conn.execute(labelled_query(sql.SQL(LABEL_COUNTS)), window.params()).fetchone()
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
    active_version: str | None = None
    if reason is not None:
        notes.append(f"Scores are a smoothed prior by source and segment: {reason}.")
        model, candidates, observations = _train_prior(conn, window, progress)
        _stamp(model, window, counts)
        save(conn, model, activate=options.activate, actor=options.actor)
        active_version = model.version if options.activate else None
    else:
        trained = _train_model(conn, window, options, progress, notes)
        model, candidates, observations = trained.model, trained.candidates, trained.observations
        _stamp(model, window, counts)
        verdict = trained.verdict
        activate = options.activate and verdict.passed
        save(conn, model, activate=activate, actor=options.actor)
        if activate:
            active_version = model.version
        elif not options.activate:
            active_version = trained.active.version if trained.active else None
        else:
            notes.append(f"Stored inactive: {verdict.reason}.")
            if trained.active is not None:
                active_version = trained.active.version
                notes.append(f"The active model {active_version} stays active.")
            else:
                fallback, _c, _o = _train_prior(conn, window, progress)
                _stamp(fallback, window, counts)
                fallback.params["instead_of"] = model.version
                save(conn, fallback, activate=True, actor=options.actor)
                active_version = fallback.version
                notes.append(
                    f"No model was active: the prior ({fallback.version}) is active instead."
                )
    return TrainResult(
        model=model,
        candidates=candidates,
        seconds=time.perf_counter() - started,
        observations=observations,
        notes=notes,
        active_version=active_version,
    )


def _stamp(model: StoredModel, window: Window, counts: LabelCounts) -> None:
    """The training window and counts, on the model to store."""
    model.horizon = window.horizon
    model.as_of = window.as_of
    model.trained_from = counts.first
    model.trained_to = counts.last
    model.n_leads, model.n_positive, model.n_negative = counts.n, counts.positives, counts.negatives


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


def _prior_frame(
    conn: Connection, window: Window
) -> tuple[str | None, list[Feature], Frame, npt.NDArray[np.int8]]:
    """The prior's segment key, its features, its frame of every labelled lead at
    creation, and their labels."""
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
    return key, features, frame, frame.labels


def _train_prior(
    conn: Connection, window: Window, progress: Progress
) -> tuple[StoredModel, list[dict[str, Any]], int]:
    progress("computing the smoothed conversion rates")
    key, features, frame, labels = _prior_frame(conn, window)
    sources, segments = prior_inputs(features, frame)
    y = labels
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


@dataclass(kw_only=True)
class Trained:
    """A model fit by :func:`_train_model`, with the gate's verdict."""

    model: StoredModel
    candidates: list[dict[str, Any]]
    observations: int
    verdict: Verdict
    active: StoredModel | None


UNKNOWN_SHARE = 0.5  # of the labelled leads with no status at creation: said in a note


def _train_model(
    conn: Connection, window: Window, options: Options, progress: Progress, notes: list[str]
) -> Trained:
    progress("finding the features")
    labelled = conn.execute(labelled_query(sql.SQL(LABELLED_LEADS)), window.params()).fetchone()
    n_leads = int(labelled[0]) if labelled else 0
    features = discover(
        conn, horizon=window.horizon, as_of=window.as_of, since=window.since, n_leads=n_leads
    )
    features = _without_excluded(features, options.exclude, notes)
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
    y = frame.labels
    first = frame.landmarks == 0
    _status_note(features, frame, first, notes)
    leakage_alarm(features, frame.values[first], y[first], int(first.sum()))
    progress("keeping the newest fifth of the labelled leads for the holdout")
    held_ids = holdout_ids(conn, window)
    held = rows_of(frame, held_ids)
    fit_rows = ~held
    judged = held & first
    encoding = fit_encoding(features, frame.values[fit_rows])
    x_fit = encode(features, encoding, frame.values[fit_rows])
    scorer, candidates, best, final = learn.select(
        x_fit, y[fit_rows], frame.groups[fit_rows], first[fit_rows], seed=options.seed,
        progress=progress, columns=[c.feature for c in encoding.columns],
    )  # fmt: skip
    p_held = scorer.predict(encode(features, encoding, frame.values[judged]))
    progress("measuring the prior and the active model on the holdout")
    rivals = {"prior": _prior_on_holdout(conn, window, held_ids, frame.ids[judged])}
    active = active_or_none(conn)
    if active is not None:
        rivals["active model"] = _active_on_holdout(conn, active, window, held_ids, frame)
    verdict = judge(y[judged], p_held, rivals)
    progress(f"fitting {best.name} on all {len(y)} observations")
    encoding = fit_encoding(features, frame.values)
    x = encode(features, encoding, frame.values)
    columns = [c.feature for c in encoding.columns]
    scorer = learn.refit(best, x, y, scorer.a, scorer.b, options.seed, columns)
    used = {c.feature for c in encoding.columns}
    dropped = [f.name for f in features if f.name not in used]
    if dropped:
        notes.append(f"Left out (the same for every lead): {', '.join(dropped)}.")
    p0 = scorer.predict(x[first])
    params: dict[str, Any] = {
        "encoding": encoding.to_dict(),
        "tier_cutoffs": tier_cutoffs(p0),
        "calibration": final.pop("calibration"),
        "platt": [scorer.a, scorer.b],
        "landmarks": list(options.landmarks),
        "base_rate": round(float(np.mean(y[first])), 6),
        "gate": verdict.to_dict(),
    }
    cands = [
        {"name": c.name, "params": c.params, "metrics": c.metrics, "chosen": c is best}
        | ({"interactions": [list(p) for p in c.pairs]} if c.pairs else {})
        for c in candidates
    ]
    params["candidates"] = cands
    metrics = final | {
        "evaluated_on": (
            f"{learn.FOLDS}-fold cross-validation by lead, at creation, on the older "
            f"{int(fit_rows[first].sum())} leads"
        ),
        "holdout": verdict.model.to_dict()
        | {"leads": verdict.leads, "conversions": verdict.conversions},
        "chosen": {"name": best.name, **best.params},
    }
    model = StoredModel(
        method="model",
        algorithm=scorer.algorithm,
        horizon=window.horizon,
        features=features,
        params=params,
        metrics=metrics,
        scorer=scorer,
    )
    progress("calibrating on replays of past days")
    replayed, note = calibrate(conn, model, as_of=window.as_of, since=window.since)
    if replayed is not None:
        params["replay"] = replayed
    notes.extend([note] if note else [])
    return Trained(
        model=model, candidates=cands, observations=len(frame), verdict=verdict, active=active
    )


def _without_excluded(
    features: list[Feature], exclude: Sequence[str], notes: list[str]
) -> list[Feature]:
    if not exclude:
        return features
    names = {f.name for f in features}
    unknown = [name for name in exclude if name not in names]
    if unknown:
        raise InvalidInput(
            f"No feature is named {', '.join(repr(u) for u in unknown)}; the features of "
            f"this CRM are: {', '.join(sorted(names))}."
        )
    notes.append(f"Left out as asked: {', '.join(exclude)}.")
    return [f for f in features if f.name not in exclude]


def _status_note(
    features: list[Feature], frame: Frame, first: npt.NDArray[np.bool_], notes: list[str]
) -> None:
    """Say so when the status history does not date the status of most labelled leads
    at their creation (an upgraded or imported database): the status is then unknown
    there, and the status features are left out wherever they are unknown everywhere."""
    status = [j for j, f in enumerate(features) if f.name == "status"]
    if not status or not first.any():
        return
    codes = frame.values[first, status[0]]
    unknown = int(np.sum(np.isnan(codes) | (codes == 0)))
    labelled = int(first.sum())
    if unknown > UNKNOWN_SHARE * labelled:
        notes.append(
            f"The status history does not say the status of {unknown} of the {labelled} "
            "labelled leads at their creation (an upgraded or imported database keeps only "
            "today's status, which would tell the outcome): a status is used only where the "
            "history proves it."
        )


def _prior_on_holdout(
    conn: Connection, window: Window, held_ids: list[str], judged_ids: npt.NDArray[np.uint8]
) -> npt.NDArray[np.float64]:
    """The prior fit on the older leads, scoring the holdout leads at creation."""
    key, features, frame, labels = _prior_frame(conn, window)
    held = rows_of(frame, held_ids)
    if not np.array_equal(frame.ids[held], judged_ids):
        raise RuntimeError("the prior's holdout rows are not the model's")
    sources, segments = prior_inputs(features, frame)
    pick = np.flatnonzero(~held).tolist()
    prior = Prior.fit(
        [sources[i] for i in pick],
        [segments[i] for i in pick],
        labels[~held].tolist(),
        key,
    )
    chosen = np.flatnonzero(held).tolist()
    p, _c, _conf = prior.predict([sources[i] for i in chosen], [segments[i] for i in chosen])
    return p


def _active_on_holdout(
    conn: Connection, active: StoredModel, window: Window, held_ids: list[str], frame: Frame
) -> npt.NDArray[np.float64]:
    """The active model's scores of the holdout leads at their creation, in the order
    of the training frame's observations at creation."""
    theirs = creation_frame(conn, active.features, horizon=window.horizon, lead_ids=held_ids)
    judged = rows_of(frame, held_ids) & (frame.landmarks == 0)
    if not np.array_equal(theirs.ids, frame.ids[judged]):
        raise RuntimeError("the active model's holdout rows are not the new model's")
    return predict(active, theirs, check=False).scores
