"""The time-based holdout, the publish gate and the leakage alarm.

* **Holdout**: the newest fifth of the labelled leads by creation (Dynamics 365's
  predictive scoring validates the same way) is kept out of fitting; every model is
  measured on those leads at their creation, beside the cross-validation.
* **Publish gate**: a trained model becomes active only if, on that holdout, it beats
  both the transparent prior (fit on the same older leads) and the active model, in
  log loss and in AUC; otherwise it is stored inactive with the reason and the margins.
* **Leakage alarm**: a feature that alone separates the labels at creation with an
  AUC of :data:`LEAK_AUC` or more is not a signal but the outcome leaking in (today's
  status read into the past, a field filled in at conversion); training stops and
  names it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from psycopg import sql

from aicrm.ai._features import Feature, Frame
from aicrm.ai._model import auc, brier, log_loss
from aicrm.ai._window import Window, labelled_query
from aicrm.db import Connection
from aicrm.db.errors import translated
from aicrm.errors import UsageError

HOLDOUT_SHARE = 0.2
LEAK_AUC = 0.95
SMOOTHING = 20.0  # pseudo-leads per category in the alarm's per-category rates

# The newest fifth of the window's labelled leads by creation (ties by id).
HOLDOUT_LEADS = """
SELECT x.id FROM (
    SELECT l.id, row_number() OVER (ORDER BY l.created_at DESC, l.id DESC) AS newest,
           count(*) OVER () AS n
    FROM leads l
    WHERE {labelled} AND (l.conversion_date IS NULL OR l.conversion_date >= l.created_at)
) AS x
WHERE x.newest <= floor(x.n * %(share)s)
"""

FloatArray = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]


@translated()
def holdout_ids(conn: Connection, window: Window) -> list[str]:
    """The ids of the newest fifth of the window's labelled leads."""
    params = window.params() | {"share": HOLDOUT_SHARE}
    return [
        str(r[0]) for r in conn.execute(labelled_query(sql.SQL(HOLDOUT_LEADS)), params).fetchall()
    ]


def rows_of(frame: Frame, lead_ids: list[str]) -> Mask:
    """Which rows of ``frame`` belong to these leads."""
    if not lead_ids or not len(frame):
        return np.zeros(len(frame), dtype=bool)
    wanted = np.array([bytes.fromhex(i.replace("-", "")) for i in lead_ids], dtype="V16")
    have = np.ascontiguousarray(frame.ids).view("V16").ravel()
    return np.isin(have, wanted)


@dataclass
class Scores:
    """A model's figures on the holdout at creation."""

    auc: float
    log_loss: float
    brier: float

    @classmethod
    def of(cls, y: npt.NDArray[Any], p: FloatArray) -> Scores:
        return cls(auc(y, p), log_loss(y, p), brier(y, p))

    def to_dict(self) -> dict[str, float | None]:
        return {
            k: (None if math.isnan(v) else round(v, 5))
            for k, v in (("auc", self.auc), ("log_loss", self.log_loss), ("brier", self.brier))
        }


@dataclass
class Verdict:
    """The publish gate's decision, with the margins it was taken on."""

    passed: bool
    reason: str
    leads: int
    conversions: int
    model: Scores
    rivals: dict[str, Scores] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "holdout_leads": self.leads,
            "holdout_conversions": self.conversions,
            "model": self.model.to_dict(),
            "rivals": {name: s.to_dict() for name, s in self.rivals.items()},
            "margins": {
                name: {
                    "log_loss": _round(s.log_loss - self.model.log_loss),
                    "auc": _round(self.model.auc - s.auc),
                }
                for name, s in self.rivals.items()
            },
        }


def _round(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 5)


def judge(y: npt.NDArray[Any], model: FloatArray, rivals: dict[str, FloatArray]) -> Verdict:
    """Whether the model beats every rival (``prior``, ``active model``) on the
    holdout labels ``y``, in log loss and AUC; the reason says by how much, or why
    not."""
    scores = Scores.of(y, model)
    others = {name: Scores.of(y, p) for name, p in rivals.items()}
    n, positives = len(y), int(np.sum(y))
    if positives == 0 or positives == n:
        return Verdict(
            False,
            f"the holdout (the newest {n} labelled leads) has "
            f"{'no conversions' if positives == 0 else 'only conversions'}: nothing to judge "
            "the model on",
            n,
            positives,
            scores,
            others,
        )
    lost: list[str] = []
    won: list[str] = []
    for name, rival in others.items():
        ll_margin = rival.log_loss - scores.log_loss
        auc_margin = scores.auc - rival.auc
        text = f"{name}: log loss {ll_margin:+.4f}, AUC {auc_margin:+.4f}"
        (won if ll_margin > 0 and auc_margin > 0 else lost).append(text)
    if lost:
        return Verdict(
            False,
            f"on the holdout of the newest {n} labelled leads it does not beat the "
            f"{'; the '.join(lost)} (margins: positive is better)",
            n,
            positives,
            scores,
            others,
        )
    return Verdict(
        True,
        f"on the holdout of the newest {n} labelled leads it beats the {'; the '.join(won)}",
        n,
        positives,
        scores,
        others,
    )


def single_feature_auc(feature: Feature, values: FloatArray, y: npt.NDArray[Any]) -> float:
    """How well one feature alone separates the labels: the AUC, in whichever
    direction is better, of its value (a number; missing ranked first or last,
    whichever separates more) or, for a category, of its smoothed conversion rate."""
    if not len(y) or int(np.sum(y)) in (0, len(y)):
        return float("nan")
    if feature.kind == "category":
        codes = np.nan_to_num(values, nan=0.0).astype(np.int64)
        overall = float(np.mean(y))
        keys, inverse = np.unique(codes, return_inverse=True)
        hits = np.bincount(inverse, weights=np.asarray(y, dtype=np.float64), minlength=keys.size)
        counts = np.bincount(inverse, minlength=keys.size)
        rate = (hits + SMOOTHING * overall) / (counts + SMOOTHING)
        a = auc(y, rate[inverse])
        return max(a, 1 - a)
    best = 0.0
    for fill in (-np.inf, np.inf):
        a = auc(y, np.where(np.isnan(values), fill, values))
        if not math.isnan(a):
            best = max(best, a, 1 - a)
    return best


def leakage_alarm(
    features: list[Feature], values: FloatArray, y: npt.NDArray[Any], leads: int
) -> None:
    """Stop training (:class:`UsageError`) when a feature alone separates the labels
    at creation with an AUC of :data:`LEAK_AUC` or more; ``values`` and ``y`` are the
    observations at creation."""
    found = []
    for j, feature in enumerate(features):
        a = single_feature_auc(feature, values[:, j], y)
        if not math.isnan(a) and a >= LEAK_AUC:
            found.append((feature, a))
    if not found:
        return
    named = ", ".join(f"{f.label} ('{f.name}', AUC {a:.3f})" for f, a in found)
    excluded = " ".join(f"--exclude {f.name}" for f, _a in found)
    raise UsageError(
        f"Training stopped: at their creation, {named} alone "
        f"{'separates' if len(found) == 1 else 'separate'} the {leads} labelled leads that "
        "converted from the others, which no real signal does: the value is probably not what "
        "was known when the lead was created (today's value, or one filled in at conversion). "
        f"Fix the data, or leave it out with 'aicrm ai train {excluded}', then train again.",
        details={"features": [{"name": f.name, "auc": round(a, 4)} for f, a in found]},
    )
