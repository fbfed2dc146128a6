"""The scoring models as plain parameters: fit with scikit-learn, kept as arrays.

Two candidate families are fit and compared by grouped cross-validation (all
observations of a lead fall in the same fold):

* ``logistic``: L2-regularised logistic regression on standardised columns, with
  missing-value indicators and quantile-bin indicators for numeric features (an
  additive model that bends);
* ``boosting``: scikit-learn's HistGradientBoostingClassifier (small trees, early
  stopping), a candidate from :data:`BOOSTING_MIN_POSITIVES` conversions up.

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
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

BOOSTING_MIN_POSITIVES = 100
FOLDS = 3
LOGISTIC_C = (0.1, 1.0)
BINS = 5


def sigmoid(z: FloatArray) -> FloatArray:
    out: FloatArray = 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))
    return out


def logit(p: FloatArray) -> FloatArray:
    q = np.clip(p, 1e-9, 1 - 1e-9)
    out: FloatArray = np.log(q / (1 - q))
    return out


# --- the logistic family -----------------------------------------------------------


@dataclass
class Linear:
    """Logistic regression over an expanded design: ``source[k]`` is the design
    column each expanded column comes from; ``kind`` 0 value, 1 missing indicator,
    2 quantile bin ``[lo, hi)``."""

    source: IntArray
    kind: IntArray
    lo: FloatArray
    hi: FloatArray
    fill: FloatArray  # per expanded column: the value that replaces NaN (kind 0)
    mean: FloatArray
    scale: FloatArray
    coef: FloatArray
    intercept: float

    @classmethod
    def layout(cls, x: FloatArray) -> Linear:
        source: list[int] = []
        kind: list[int] = []
        lo: list[float] = []
        hi: list[float] = []
        fill: list[float] = []
        for j in range(x.shape[1]):
            col = x[:, j]
            finite = col[~np.isnan(col)]
            median = float(np.median(finite)) if finite.size else 0.0
            source.append(j)
            kind.append(0)
            lo.append(0.0)
            hi.append(0.0)
            fill.append(median)
            if finite.size < col.size:
                source.append(j)
                kind.append(1)
                lo.append(0.0)
                hi.append(0.0)
                fill.append(0.0)
            distinct = np.unique(finite)
            if distinct.size > 2 * BINS:
                edges = np.unique(np.quantile(finite, np.linspace(0, 1, BINS + 1)[1:-1]))
                bounds = [-math.inf, *edges.tolist(), math.inf]
                for a, b in itertools.pairwise(bounds):
                    source.append(j)
                    kind.append(2)
                    lo.append(a)
                    hi.append(b)
                    fill.append(0.0)
        n = len(source)
        return cls(
            np.array(source, dtype=np.int64), np.array(kind, dtype=np.int64),
            np.array(lo), np.array(hi), np.array(fill), np.zeros(n), np.ones(n), np.zeros(n), 0.0,
        )  # fmt: skip

    def expand(self, x: FloatArray) -> FloatArray:
        cols = x[:, self.source]
        missing = np.isnan(cols)
        out = np.where(missing, self.fill, cols)
        ind = self.kind == 1
        out[:, ind] = missing[:, ind]
        bins = self.kind == 2
        if bins.any():
            v = cols[:, bins]
            out[:, bins] = (v >= self.lo[bins]) & (v < self.hi[bins]) & ~missing[:, bins]
        return out

    def standardise(self, x: FloatArray) -> FloatArray:
        out: FloatArray = (self.expand(x) - self.mean) / self.scale
        return out

    def raw(self, x: FloatArray) -> FloatArray:
        out: FloatArray = self.standardise(x) @ self.coef + self.intercept
        return out

    def contributions(
        self, x: FloatArray, n_columns: int, combine: FloatArray | None = None
    ) -> tuple[FloatArray, float]:
        """Per design column (raw log-odds), or per output of ``combine`` (design
        columns × outputs), and the bias (the intercept)."""
        parts = self.standardise(x) * self.coef
        weights = np.zeros((parts.shape[1], n_columns))
        weights[np.arange(parts.shape[1]), self.source] = 1.0
        if combine is not None:
            weights = weights @ combine
        out: FloatArray = parts @ weights
        return out, self.intercept

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {
            "source": self.source, "kind": self.kind, "lo": self.lo, "hi": self.hi,
            "fill": self.fill, "mean": self.mean, "scale": self.scale, "coef": self.coef,
            "intercept": np.array([self.intercept]),
        }  # fmt: skip

    @classmethod
    def from_arrays(cls, a: dict[str, npt.NDArray[Any]]) -> Linear:
        return cls(
            a["source"].astype(np.int64), a["kind"].astype(np.int64), a["lo"], a["hi"],
            a["fill"], a["mean"], a["scale"], a["coef"], float(a["intercept"][0]),
        )  # fmt: skip


def fit_linear(x: FloatArray, y: npt.NDArray[np.int8], c: float) -> Linear:
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    model = Linear.layout(x)
    z = model.expand(x)
    model.mean = z.mean(axis=0)
    std = z.std(axis=0)
    # Numbers are standardised; 0/1 columns (category levels, bins, missing indicators)
    # keep their own scale, so the L2 penalty shrinks a rare level's effect toward the
    # average as much as its few leads leave unproven (standardising would divide a
    # level seen on 0.1 % of rows by 0.03 and all but lift the penalty off it).
    binary = np.all((z == 0) | (z == 1), axis=0)
    model.scale = np.where(binary | (std <= 1e-12), 1.0, std)
    zs = (z - model.mean) / model.scale
    fit = LogisticRegression(C=c, max_iter=500)
    fit.fit(zs, y)
    model.coef = fit.coef_[0].astype(np.float64)
    model.intercept = float(fit.intercept_[0])
    return model


# --- the boosting family -----------------------------------------------------------


@dataclass
class Trees:
    """Every tree's nodes in flat arrays; ``value`` holds each node's expected raw
    prediction (leaves: their value; inner nodes: the training-count-weighted mean of
    their leaves), so a path's value changes sum to the leaf's value."""

    roots: IntArray
    feature: IntArray
    threshold: FloatArray
    missing_left: npt.NDArray[np.bool_]
    left: IntArray
    right: IntArray
    leaf: npt.NDArray[np.bool_]
    value: FloatArray
    baseline: float
    depth: int

    @classmethod
    def from_sklearn(cls, fitted: Any) -> Trees:
        roots: list[int] = []
        parts: dict[str, list[npt.NDArray[Any]]] = {
            k: []
            for k in ("feature", "threshold", "missing_left", "left", "right", "leaf", "value")
        }
        offset = 0
        depth = 0
        for iteration in fitted._predictors:
            nodes = iteration[0].nodes
            if np.any(nodes["is_categorical"]):
                raise ValueError("categorical splits are not supported")
            value = nodes["value"].astype(np.float64).copy()
            count = nodes["count"].astype(np.float64)
            leaf = nodes["is_leaf"].astype(bool)
            left = nodes["left"].astype(np.int64)
            right = nodes["right"].astype(np.int64)
            # expected value of inner nodes, children before parents (reverse order)
            for i in sorted(np.flatnonzero(~leaf), key=lambda k: -int(nodes["depth"][k])):
                lc, rc = left[i], right[i]
                total = count[lc] + count[rc]
                value[i] = (
                    (value[lc] * count[lc] + value[rc] * count[rc]) / total
                    if total > 0
                    else 0.5 * (value[lc] + value[rc])
                )
            roots.append(offset)
            parts["feature"].append(nodes["feature_idx"].astype(np.int64))
            parts["threshold"].append(nodes["num_threshold"].astype(np.float64))
            parts["missing_left"].append(nodes["missing_go_to_left"].astype(bool))
            parts["left"].append(np.where(leaf, 0, left + offset))
            parts["right"].append(np.where(leaf, 0, right + offset))
            parts["leaf"].append(leaf)
            parts["value"].append(value)
            depth = max(depth, int(nodes["depth"].max()))
            offset += len(nodes)
        baseline = float(np.ravel(fitted._baseline_prediction)[0])

        def cat(name: str, dtype: Any) -> Any:
            return (
                np.concatenate(parts[name]).astype(dtype)
                if parts[name]
                else np.empty(0, dtype=dtype)
            )

        return cls(
            np.array(roots, dtype=np.int64), cat("feature", np.int64),
            cat("threshold", np.float64), cat("missing_left", bool), cat("left", np.int64),
            cat("right", np.int64), cat("leaf", bool), cat("value", np.float64), baseline, depth,
        )  # fmt: skip

    @property
    def bias(self) -> float:
        return self.baseline + float(self.value[self.roots].sum())

    def raw(self, x: FloatArray) -> FloatArray:
        leaves = self.leaves(x)
        out: FloatArray = self.value[leaves].sum(axis=1) + self.baseline
        return out

    def leaves(self, x: FloatArray) -> npt.NDArray[np.intp]:
        """The leaf (a global node number) each row reaches in each tree: (n, trees).

        scikit-learn's compiled tree walker does it when it is importable (each tree's
        nodes rebuilt as its predictor records, with every leaf's value set to the
        leaf's number); otherwise numpy walks all trees one level at a time."""
        fast = _compiled_walker()
        if fast is not None and len(self.roots):
            try:
                return self._leaves_compiled(x, *fast)
            except (TypeError, ValueError):  # a scikit-learn whose internals differ
                pass
        return self._leaves_numpy(x)

    def _leaves_numpy(self, x: FloatArray, chunk: int = 20_000) -> npt.NDArray[np.intp]:
        n_trees = len(self.roots)
        out = np.empty((x.shape[0], n_trees), dtype=np.intp)
        for start in range(0, x.shape[0], chunk):
            xc = x[start : start + chunk]
            b = xc.shape[0]
            rows = np.repeat(np.arange(b), n_trees).reshape(b, n_trees)
            node = np.broadcast_to(self.roots, (b, n_trees)).copy()
            for _ in range(self.depth + 1):
                inner = ~self.leaf[node]
                if not inner.any():
                    break
                val = xc[rows, self.feature[node]]
                go_left = np.where(
                    np.isnan(val), self.missing_left[node], val <= self.threshold[node]
                )
                node = np.where(inner, np.where(go_left, self.left[node], self.right[node]), node)
            out[start : start + b] = node
        return out

    def _leaves_compiled(
        self, x: FloatArray, walk: Any, record: np.dtype[Any]
    ) -> npt.NDArray[np.intp]:
        xs = np.ascontiguousarray(x, dtype=np.float64)
        n_trees = len(self.roots)
        out = np.empty((xs.shape[0], n_trees), dtype=np.intp)
        ends = [*self.roots[1:].tolist(), len(self.leaf)]
        no_categories = np.zeros((0, 8), dtype=np.uint32)
        f_idx_map = np.zeros(xs.shape[1], dtype=np.uint32)
        found = np.empty(xs.shape[0], dtype=np.float64)
        for t, (start, end) in enumerate(zip(self.roots.tolist(), ends, strict=True)):
            nodes = np.zeros(end - start, dtype=record)
            leaf = self.leaf[start:end]
            nodes["value"] = np.arange(start, end, dtype=np.float64)
            nodes["feature_idx"] = np.where(leaf, 0, self.feature[start:end])
            nodes["num_threshold"] = self.threshold[start:end]
            nodes["missing_go_to_left"] = self.missing_left[start:end]
            nodes["left"] = np.where(leaf, 0, self.left[start:end] - start)
            nodes["right"] = np.where(leaf, 0, self.right[start:end] - start)
            nodes["is_leaf"] = leaf
            walk(nodes, xs, no_categories, no_categories, f_idx_map, _threads(), found)
            out[:, t] = found
        return out

    def leaf_table(self, combine: FloatArray) -> FloatArray:
        """Each leaf's path contributions (Saabas), per output column of ``combine``
        (design columns × outputs): the change of the expected value at every split
        on the way from the root, credited to the split's feature. Inner nodes: 0."""
        per_node = np.zeros((len(self.leaf), combine.shape[0]))
        for root in self.roots.tolist():
            stack = [(int(root), np.zeros(combine.shape[0]))]
            while stack:
                node, acc = stack.pop()
                if self.leaf[node]:
                    per_node[node] = acc
                    continue
                feat = int(self.feature[node])
                for child in (int(self.left[node]), int(self.right[node])):
                    step = acc.copy()
                    step[feat] += self.value[child] - self.value[node]
                    stack.append((child, step))
        out: FloatArray = per_node @ combine
        return out

    def contributions(
        self, x: FloatArray, n_columns: int, combine: FloatArray | None = None,
        chunk: int = 100_000,
    ) -> tuple[FloatArray, float]:  # fmt: skip
        """Per design column (or per output of ``combine``, design columns × outputs)
        path contributions, and the bias: a sparse one-hot matrix of the leaves
        reached times each leaf's contributions."""
        from scipy import sparse  # type: ignore[import-untyped]

        weights = np.eye(n_columns) if combine is None else combine
        out = np.zeros((x.shape[0], weights.shape[1]))
        n_trees = len(self.roots)
        if n_trees == 0:
            return out, self.bias
        table = self.leaf_table(weights)
        for start in range(0, x.shape[0], chunk):
            leaves = self.leaves(x[start : start + chunk])
            b = leaves.shape[0]
            hits = sparse.csr_matrix(
                (np.ones(b * n_trees), leaves.ravel(), np.arange(0, b * n_trees + 1, n_trees)),
                shape=(b, len(self.leaf)),
            )
            out[start : start + b] = hits @ table
        return out, self.bias

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {
            "roots": self.roots, "feature": self.feature, "threshold": self.threshold,
            "missing_left": self.missing_left, "left": self.left, "right": self.right,
            "leaf": self.leaf, "value": self.value,
            "baseline": np.array([self.baseline]), "depth": np.array([self.depth]),
        }  # fmt: skip

    @classmethod
    def from_arrays(cls, a: dict[str, npt.NDArray[Any]]) -> Trees:
        return cls(
            a["roots"].astype(np.int64), a["feature"].astype(np.int64), a["threshold"],
            a["missing_left"].astype(bool), a["left"].astype(np.int64),
            a["right"].astype(np.int64), a["leaf"].astype(bool), a["value"],
            float(a["baseline"][0]), int(a["depth"][0]),
        )  # fmt: skip


def boosting_estimator(seed: int = 0) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier  # type: ignore[import-untyped]

    return HistGradientBoostingClassifier(
        learning_rate=0.1,
        max_iter=150,
        max_leaf_nodes=15,
        min_samples_leaf=40,
        l2_regularization=1.0,
        early_stopping=True,
        validation_fraction=0.15,
        n_iter_no_change=10,
        random_state=seed,
    )


def fit_trees(x: FloatArray, y: npt.NDArray[np.int8], seed: int = 0) -> Trees:
    fitted = boosting_estimator(seed)
    fitted.fit(x, y)
    return Trees.from_sklearn(fitted)


def _threads() -> int:
    import os

    return max(1, int(os.environ.get("AICRM_AI_THREADS", "1")))


def _compiled_walker() -> tuple[Any, np.dtype[Any]] | None:
    """scikit-learn's compiled tree walker and its node record type, if importable."""
    try:
        from sklearn.ensemble._hist_gradient_boosting._predictor import (  # type: ignore[import-untyped]
            _predict_from_raw_data,
        )
        from sklearn.ensemble._hist_gradient_boosting.common import (  # type: ignore[import-untyped]
            PREDICTOR_RECORD_DTYPE,
        )
    except ImportError:
        return None
    return _predict_from_raw_data, np.dtype(PREDICTOR_RECORD_DTYPE)


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


# --- metrics -----------------------------------------------------------------------


def auc(y: npt.NDArray[Any], p: FloatArray) -> float:
    """Area under the ROC curve (ties counted half); NaN with one class only."""
    y = np.asarray(y).astype(bool)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata  # type: ignore[import-untyped]

    ranks = rankdata(p)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def brier(y: npt.NDArray[Any], p: FloatArray) -> float:
    return float(np.mean((np.asarray(p) - np.asarray(y)) ** 2)) if len(y) else float("nan")


def log_loss(y: npt.NDArray[Any], p: FloatArray) -> float:
    q = np.clip(p, 1e-12, 1 - 1e-12)
    yy = np.asarray(y, dtype=np.float64)
    return float(-np.mean(yy * np.log(q) + (1 - yy) * np.log(1 - q))) if len(yy) else float("nan")


def calibration_table(y: npt.NDArray[Any], p: FloatArray, bins: int = 10) -> list[dict[str, Any]]:
    """Observed vs predicted rate in bins of equal count (deciles by default)."""
    if len(y) == 0:
        return []
    order = np.argsort(p, kind="stable")
    out = []
    for part in np.array_split(order, min(bins, len(order))):
        if part.size:
            out.append(
                {
                    "n": int(part.size),
                    "predicted": round(float(np.mean(p[part])), 4),
                    "observed": round(float(np.mean(np.asarray(y)[part])), 4),
                }
            )
    return out


def calibration_error(table: Sequence[dict[str, Any]]) -> float:
    """Expected calibration error of a calibration table (count-weighted)."""
    total = sum(row["n"] for row in table)
    if not total:
        return float("nan")
    return float(sum(row["n"] * abs(row["predicted"] - row["observed"]) for row in table) / total)


# --- selection by grouped cross-validation ------------------------------------------


@dataclass
class Candidate:
    name: str
    params: dict[str, Any]
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
) -> tuple[Scorer, list[Candidate], Candidate, dict[str, Any]]:
    """Fit each candidate on the folds, pick the simplest within one standard error
    of the lowest log loss, calibrate, refit.

    ``first`` marks each lead's observation at creation (where the metrics that
    define the task are measured). Returns the scorer, every candidate with its
    cross-validated metrics, the winner, and the winner's calibrated metrics."""
    candidates = [Candidate("logistic", {"C": c}) for c in LOGISTIC_C]
    if int(y.sum()) >= BOOSTING_MIN_POSITIVES:
        candidates.append(Candidate("boosting", {}))
    folds = _folds(groups, y, FOLDS, seed)
    with single_thread():
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
    import os

    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    return threadpool_limits(limits=int(os.environ.get("AICRM_AI_THREADS", "1")))


def _fit(candidate: Candidate, x: FloatArray, y: npt.NDArray[np.int8], seed: int) -> Linear | Trees:
    if candidate.name == "logistic":
        return fit_linear(x, y, float(candidate.params["C"]))
    return fit_trees(x, y, seed)


def refit(
    candidate: Candidate, x: FloatArray, y: npt.NDArray[np.int8], a: float, b: float, seed: int
) -> Scorer:
    """``candidate`` fit on these rows, with the calibration ``σ(a·raw + b)`` found
    for it by cross-validation."""
    with single_thread():
        return Scorer(candidate.name, _fit(candidate, x, y, seed), a, b)


def platt(raw: FloatArray, y: npt.NDArray[np.int8]) -> tuple[float, float]:
    """Platt scaling: the a, b of ``σ(a·raw + b)`` fit by (almost unregularised)
    logistic regression of the outcome on the raw log-odds."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y)) < 2:
        return 1.0, 0.0
    fit = LogisticRegression(C=1e4, max_iter=1000)
    fit.fit(raw.reshape(-1, 1), y)
    return float(fit.coef_[0][0]), float(fit.intercept_[0])
