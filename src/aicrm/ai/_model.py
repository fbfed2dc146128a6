"""Choosing and calibrating the scoring model; the fitted model as plain parameters.

Two candidate families are fit and compared by grouped cross-validation (all
observations of a lead fall in the same fold):

* ``logistic`` (:mod:`aicrm.ai._linear`): L2-regularised logistic regression with
  missing-value indicators and hinges at quantile knots for numeric features (an
  additive model that bends), plus the cells of the pairs of features found to
  interact (:mod:`aicrm.ai._interactions`, searched once on the training rows before
  the cross-validation), fit by scikit-learn's public ``LogisticRegression``;
* ``boosting`` (:mod:`aicrm.ai._trees`): gradient-boosted trees fit by LightGBM
  (small trees, early stopping), read from its public JSON dump; a candidate from
  :data:`BOOSTING_MIN_POSITIVES` conversions up.

The winner (lowest cross-validated log loss) is refit on everything and
calibrated by Platt scaling fit on its out-of-fold scores: ``p = σ(a·z + b)``
where ``z`` is the model's raw log-odds. Because the calibration is linear in
``z``, every lead's score splits exactly into per-feature contributions on the
calibrated log-odds scale: ``a·z + b = bias + Σ contributions``. For the logistic
model a contribution is ``a·w_j·x_j`` (standardised ``x_j``: relative to the
average training lead); for trees it is the path decomposition of each tree
(Saabas): the change in the subtree's expected value at every split a lead
passes, credited to the split's feature.

Models are stored as an ``.npz`` of plain numeric arrays and loaded with
``allow_pickle=False``; no byte from the database is ever unpickled.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

# Re-exported: the families and the measures are read through this module.
from aicrm.ai._linear import Linear as Linear, find_pairs, fit_linear as fit_linear
from aicrm.ai._metrics import (
    auc as auc,
    brier as brier,
    calibration_error as calibration_error,
    calibration_table as calibration_table,
    log_loss as log_loss,
    logit as logit,
    sigmoid as sigmoid,
)
from aicrm.ai._trees import (
    Trees as Trees,
    available as trees_available,
    fit_trees as fit_trees,
    threads,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

BOOSTING_MIN_POSITIVES = 100
FOLDS = 3
LOGISTIC_C = (0.1, 1.0)


# --- the fitted, calibrated model --------------------------------------------------


@dataclass
class Scorer:
    """A fitted model and its Platt calibration: ``p = σ(a·raw + b)``."""

    algorithm: str  # "logistic" or "boosting"
    inner: Linear | Trees
    a: float = 1.0
    b: float = 0.0

    def calibrated_logit(self, x: FloatArray) -> FloatArray:
        out: FloatArray = self.a * self.inner.raw(x) + self.b
        return out

    def predict(self, x: FloatArray) -> FloatArray:
        return sigmoid(self.calibrated_logit(x))

    def explain(self, x: FloatArray, combine: FloatArray | None = None) -> tuple[FloatArray, float]:
        """Per design column contributions to the calibrated log-odds, and the bias:
        ``bias + contributions.sum(1) == calibrated_logit(x)``. With ``combine``
        (design columns × outputs, e.g. 0/1 columns → features) the contributions
        are summed into its outputs on the way."""
        contrib, bias = self.inner.contributions(x, x.shape[1], combine)
        return self.a * contrib, self.a * bias + self.b

    def to_npz(self) -> bytes:
        arrays = {f"m_{k}": v for k, v in self.inner.arrays().items()}
        arrays["calibration"] = np.array([self.a, self.b])
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
        return buffer.getvalue()

    @classmethod
    def from_npz(cls, algorithm: str, blob: bytes) -> Scorer:
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            arrays = {k[2:]: data[k] for k in data.files if k.startswith("m_")}
            a, b = (float(v) for v in data["calibration"])
        inner: Linear | Trees
        if algorithm == "logistic":
            inner = Linear.from_arrays(arrays)
        elif algorithm == "boosting":
            inner = Trees.from_arrays(arrays)
        else:
            raise ValueError(f"unknown algorithm {algorithm!r}")
        return cls(algorithm, inner, a, b)


# --- selection by grouped cross-validation ------------------------------------------


@dataclass
class Candidate:
    name: str
    params: dict[str, Any]
    pairs: list[tuple[str, str]] = field(default_factory=list)  # interacting features
    columns: Sequence[str] | None = None  # the feature of each design column
    oof: FloatArray = field(default_factory=lambda: np.empty(0))  # out-of-fold raw log-odds
    metrics: dict[str, float] = field(default_factory=dict)


def _folds(groups: IntArray, y: npt.NDArray[np.int8], k: int, seed: int) -> list[IntArray]:
    """Fold number per row: groups (leads) shuffled, positives spread evenly."""
    rng = np.random.default_rng(seed)
    unique = np.unique(groups)
    positive = np.zeros(unique.size, dtype=bool)
    positive[np.searchsorted(unique, groups[y == 1])] = True
    fold_of = np.empty(unique.size, dtype=np.int64)
    for mask in (positive, ~positive):
        members = rng.permutation(np.flatnonzero(mask))
        fold_of[members] = np.arange(members.size) % k
    per_row = fold_of[np.searchsorted(unique, groups)]
    return [np.flatnonzero(per_row == f) for f in range(k)]


def select(
    x: FloatArray,
    y: npt.NDArray[np.int8],
    groups: IntArray,
    first: npt.NDArray[np.bool_],
    *,
    seed: int = 0,
    progress: Any = None,
    columns: Sequence[str] | None = None,
) -> tuple[Scorer, list[Candidate], Candidate, dict[str, Any]]:
    """Fit each candidate on the folds, pick the simplest within one standard error
    of the lowest log loss, calibrate, refit.

    ``columns`` names the feature of each design column: with it, the logistic
    candidates get the pairs of features that interact. ``first`` marks each lead's
    observation at creation (where the metrics that define the task are measured).
    Returns the scorer, every candidate with its cross-validated metrics, the winner,
    and the winner's calibrated metrics."""
    folds = _folds(groups, y, FOLDS, seed)
    with single_thread():
        pairs = find_pairs(x, y, columns, progress) if columns is not None else []
        candidates = [Candidate("logistic", {"C": c}, pairs, columns=columns) for c in LOGISTIC_C]
        if int(y.sum()) >= BOOSTING_MIN_POSITIVES and trees_available():
            candidates.append(Candidate("boosting", {}))
        for candidate in candidates:
            if progress is not None:
                progress(f"cross-validating {candidate.name} {candidate.params or ''}".strip())
            oof = np.zeros(len(y))
            for test in folds:
                train = np.setdiff1d(np.arange(len(y)), test, assume_unique=True)
                if len(np.unique(y[train])) < 2:
                    oof[test] = logit(np.full(test.size, float(np.mean(y[train]))))
                    continue
                inner = _fit(candidate, x[train], y[train], seed)
                oof[test] = inner.raw(x[test])
            candidate.oof = oof
            p = sigmoid(oof)
            # chosen on the observations at creation, where the quality line is measured
            candidate.metrics = {
                "log_loss": round(log_loss(y[first], p[first]), 5),
                "auc": round(auc(y[first], p[first]), 5),
                "log_loss_all_observations": round(log_loss(y, p), 5),
                "auc_all_observations": round(auc(y, p), 5),
            }
        best = _one_standard_error(candidates, y, groups, first)
        a, b = platt(best.oof, y)
        calibrated = sigmoid(a * best.oof + b)
        table = calibration_table(y[first], calibrated[first])
        final: dict[str, Any] = {
            "auc": auc(y[first], calibrated[first]),
            "brier": brier(y[first], calibrated[first]),
            "log_loss": log_loss(y[first], calibrated[first]),
            "auc_all_observations": auc(y, calibrated),
            "brier_all_observations": brier(y, calibrated),
            "calibration_error": calibration_error(table),
        }
        final = {k: round(v, 5) for k, v in final.items()}
        final["calibration"] = table
        if progress is not None:
            progress(f"fitting {best.name} on all {len(y)} observations")
        scorer = Scorer(best.name, _fit(best, x, y, seed), a, b)
    return scorer, candidates, best, final


def _one_standard_error(
    candidates: list[Candidate],
    y_all: npt.NDArray[np.int8],
    groups_all: IntArray,
    rows: npt.NDArray[np.bool_],
) -> Candidate:
    """The first candidate (they are listed simplest first) whose out-of-fold log loss
    on ``rows`` (the observations at creation, where the reported quality is measured)
    is within one standard error of the lowest: the paired per-lead loss difference,
    so that a more complex model must be better beyond noise. Simpler models explain
    faster and extrapolate more gently."""
    y = y_all[rows]
    groups = groups_all[rows]
    losses = {}
    for c in candidates:
        q = np.clip(sigmoid(c.oof[rows]), 1e-12, 1 - 1e-12)
        losses[c.name + str(c.params)] = -(y * np.log(q) + (1 - y) * np.log(1 - q))
    lowest = min(candidates, key=lambda c: c.metrics["log_loss"])
    best_loss = losses[lowest.name + str(lowest.params)]
    counts = np.bincount(groups).astype(np.float64)
    present = counts > 0
    for c in candidates:
        diff = losses[c.name + str(c.params)] - best_loss
        per_lead = np.bincount(groups, weights=diff)[present] / counts[present]
        se = float(np.std(per_lead) / math.sqrt(max(per_lead.size, 1)))
        if float(np.mean(diff)) <= se:
            c.metrics["within_one_se"] = 1.0
            return c
    return lowest


def single_thread() -> Any:
    """scikit-learn's OpenMP and BLAS pools at one thread (``AICRM_AI_THREADS``
    to change): on small machines two threads made boosting 3× slower."""
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    return threadpool_limits(limits=threads())


def _fit(candidate: Candidate, x: FloatArray, y: npt.NDArray[np.int8], seed: int) -> Linear | Trees:
    if candidate.name == "logistic":
        return fit_linear(x, y, float(candidate.params["C"]), candidate.columns, candidate.pairs)
    return fit_trees(x, y, seed)


def refit(
    candidate: Candidate,
    x: FloatArray,
    y: npt.NDArray[np.int8],
    a: float,
    b: float,
    seed: int,
    columns: Sequence[str] | None = None,
) -> Scorer:
    """``candidate`` fit on these rows (whose design columns ``columns`` names, when
    they differ from the cross-validation's), with the calibration ``σ(a·raw + b)``
    found for it by cross-validation."""
    if columns is not None and candidate.columns is not None:
        candidate = replace(candidate, columns=list(columns))
    with single_thread():
        return Scorer(candidate.name, _fit(candidate, x, y, seed), a, b)


def platt(raw: FloatArray, y: npt.NDArray[np.int8]) -> tuple[float, float]:
    """Platt scaling: the a, b of ``σ(a·raw + b)`` fit by (almost unregularised)
    logistic regression of the outcome on the raw log-odds."""
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    if len(np.unique(y)) < 2:
        return 1.0, 0.0
    fit = LogisticRegression(C=1e4, max_iter=1000)
    fit.fit(raw.reshape(-1, 1), y)
    return float(fit.coef_[0][0]), float(fit.intercept_[0])
