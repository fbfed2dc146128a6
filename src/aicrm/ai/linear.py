"""The logistic family of scoring models: L2-regularised logistic regression over an
expanded design (missing-value indicators and quantile-bin indicators for numeric
columns: an additive model that bends), kept as plain arrays.

Numbers are standardised; 0/1 columns keep their own scale, so that the penalty
shrinks the effect of a rare category level toward the average."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

BINS = 5


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
