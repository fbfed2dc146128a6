"""Predicting with a stored model: scores, tiers and per-feature contributions.

Each score splits exactly into contributions on the calibrated log-odds, one per
feature the model reads (:attr:`Predictions.groups`): ``logit(score) = bias + Σ
contributions``. Explanations and the bulk write-back both read them from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from aicrm.ai._features import Feature, Frame, encode
from aicrm.ai._model import sigmoid
from aicrm.ai._prior import logit, prior_inputs
from aicrm.ai._store import StoredModel

TIERS = ("A", "B", "C", "D")
TIER_SHARES = (0.10, 0.20, 0.30)  # A: top 10 %, B: next 20 %, C: next 30 %, D: the rest
WARN_FROM = 50  # a lead may lack an attribute; all of this many may not

FloatArray = npt.NDArray[np.float64]


@dataclass
class Predictions:
    """Scores of a frame's rows, their per-feature contributions and readable values."""

    scores: FloatArray
    tiers: npt.NDArray[np.int64]  # 1..4 for A..D
    confidence: FloatArray
    bias: float
    groups: list[Feature]  # the factors contributions are split into
    contributions: FloatArray  # (n, len(groups)), calibrated log-odds
    warnings: list[str] = field(default_factory=list)


def tier_cutoffs(p: FloatArray) -> list[float]:
    """The scores at which tiers A, B and C begin, from the training scores."""
    if not len(p):
        return [1.0, 1.0, 1.0]
    shares = np.cumsum(TIER_SHARES)
    return [round(float(np.quantile(p, 1 - s)), 6) for s in shares]


def groups(stored: StoredModel) -> list[Feature]:
    """The features contributions are split into (those the model reads)."""
    if stored.prior is not None:
        return stored.features[:2]
    used = {c.feature for c in stored.encoding.columns}
    return [f for f in stored.features if f.name in used]


def attributes_seen(stored: StoredModel, values: FloatArray) -> set[str]:
    """The attribute keys of the model that at least one of these rows has."""
    seen = set()
    for j, feature in enumerate(stored.features):
        if feature.key is not None:
            col = values[:, j]
            missing = np.isnan(col) | (col == 0) if feature.kind == "category" else np.isnan(col)
            if not np.all(missing):
                seen.add(feature.key)
    return seen


def missing_warnings(stored: StoredModel, seen: set[str], n: int) -> list[str]:
    """A warning for each attribute of the model that none of ``n`` leads has."""
    if n < WARN_FROM:
        return []
    return [
        f"No lead has the attribute '{f.key}' the model was trained with; it counts as unknown."
        for f in stored.features
        if f.key is not None and f.key not in seen
    ]


def predict(
    stored: StoredModel, frame: Frame, *, check: bool = True, replayed: bool = True
) -> Predictions:
    """Scores, tiers and per-feature contributions of the frame's rows; with
    ``check``, a warning for each attribute of the model that no row has. With
    ``replayed`` (the default), the model's calibration on replays of past days
    (:mod:`aicrm.ai._replay`) is applied when it has one."""
    warnings = (
        missing_warnings(stored, attributes_seen(stored, frame.values), len(frame)) if check else []
    )
    if stored.prior is not None:
        sources, segments = prior_inputs(stored.features, frame)
        p, contrib, conf = stored.prior.predict(sources, segments)
        bias = logit(stored.prior.overall)
        used = stored.features[: contrib.shape[1]]
        contrib = contrib[:, : len(used)]
    else:
        assert stored.scorer is not None
        encoding = stored.encoding
        x = encode(stored.features, encoding, frame.values)
        used = groups(stored)
        index = {f.name: g for g, f in enumerate(used)}
        combine = np.zeros((len(encoding.columns), len(used)))
        for k, column in enumerate(encoding.columns):
            combine[k, index[column.feature]] = 1.0
        contrib, bias = stored.scorer.explain(x, combine)
        p = sigmoid(contrib.sum(axis=1) + bias)
        conf = np.full(len(frame), stored.confidence)
    cutoffs = stored.cutoffs
    replay = stored.params.get("replay") if replayed else None
    if isinstance(replay, dict) and isinstance(replay.get("platt"), list):
        a, b = (float(v) for v in replay["platt"])  # logit(p') = a·logit(p) + b, a > 0
        p, contrib, bias = recalibrate(p, a, b), contrib * a, a * bias + b
        cutoffs = [float(c) for c in recalibrate(np.array(cutoffs, dtype=np.float64), a, b)]
    return Predictions(p, assign_tiers(p, cutoffs), conf, float(bias), used, contrib, warnings)


def assign_tiers(p: FloatArray, cutoffs: list[float]) -> npt.NDArray[np.int64]:
    """1..4 (A..D) for each score, by the model's cut-offs."""
    return np.where(
        p >= cutoffs[0], 1, np.where(p >= cutoffs[1], 2, np.where(p >= cutoffs[2], 3, 4))
    ).astype(np.int64)


def recalibrate(p: FloatArray, a: float, b: float) -> FloatArray:
    """Scores after a calibration of their log-odds: ``σ(a·logit(p) + b)``."""
    return np.asarray(1.0 / (1.0 + np.exp(-(a * logits(p) + b))), dtype=np.float64)


def logits(p: FloatArray) -> FloatArray:
    """``logit(p)`` of each score, kept away from 0 and 1."""
    q = np.clip(p, 1e-9, 1 - 1e-9)
    return np.asarray(np.log(q / (1 - q)), dtype=np.float64)
