"""The logistic family of scoring models: L2-regularised logistic regression over an
expanded design, kept as plain arrays.

Each numeric column becomes its value, a missing-value indicator, and hinges
``max(0, x - knot)`` at quantile knots: a piecewise-linear curve that bends where the
data says (an effect that peaks in the middle, or one that flattens), continuous,
unlike steps. Pairs of features that interact (:mod:`aicrm.ai._interactions`) add one
indicator per cell of their two-way table. Models stored before hinges existed hold
quantile-bin indicators instead, still read and scored.

Numbers are standardised; 0/1 columns keep their own scale, so that the penalty
shrinks the effect of a rare category level (or a rare cell) toward the average."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from aicrm.ai._interactions import pair_cells, search

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

KNOTS = 5
# kinds of expanded columns
VALUE, MISSING, BIN, HINGE, CELL = 0, 1, 2, 3, 4


@dataclass
class Linear:
    """Logistic regression over an expanded design: ``source[k]`` is the design
    column each expanded column comes from; ``kind`` :data:`VALUE`, :data:`MISSING`,
    :data:`BIN` (``lo <= x < hi``; older models), :data:`HINGE` (``max(0, x - lo)``)
    or :data:`CELL` (``lo <= x < hi`` and ``lo2 <= x[source2] < hi2``)."""

    source: IntArray
    kind: IntArray
    lo: FloatArray
    hi: FloatArray
    fill: FloatArray  # per expanded column: the value that replaces NaN (kind 0)
    mean: FloatArray
    scale: FloatArray
    coef: FloatArray
    intercept: float
    # the second column of a pair's cell (-1: none)
    source2: IntArray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    lo2: FloatArray = field(default_factory=lambda: np.empty(0))
    hi2: FloatArray = field(default_factory=lambda: np.empty(0))

    @classmethod
    def layout(
        cls,
        x: FloatArray,
        columns: Sequence[str] | None = None,
        pairs: Sequence[tuple[str, str]] = (),
    ) -> Linear:
        rows: list[tuple[int, int, float, float, float]] = []  # source, kind, lo, hi, fill
        for j in range(x.shape[1]):
            col = x[:, j]
            finite = col[~np.isnan(col)]
            rows.append((j, VALUE, 0.0, 0.0, float(np.median(finite)) if finite.size else 0.0))
            if finite.size < col.size:
                rows.append((j, MISSING, 0.0, 0.0, 0.0))
            if np.unique(finite).size > 2 * KNOTS:
                knots = np.unique(np.quantile(finite, np.linspace(0, 1, KNOTS + 2)[1:-1]))
                rows.extend((j, HINGE, float(k), 0.0, 0.0) for k in knots)
        second: list[tuple[int, float, float]] = [(-1, 0.0, 0.0)] * len(rows)
        for pair in pairs:
            for (a, a_lo, a_hi), b in pair_cells(x, columns or [], pair):
                rows.append((a, CELL, a_lo, a_hi, 0.0))
                second.append(b)
        n = len(rows)

        def column(i: int, dtype: type) -> npt.NDArray[Any]:
            return np.array([r[i] for r in rows], dtype=dtype)

        return cls(
            column(0, np.int64), column(1, np.int64), column(2, np.float64),
            column(3, np.float64), column(4, np.float64), np.zeros(n), np.ones(n),
            np.zeros(n), 0.0, np.array([s[0] for s in second], dtype=np.int64),
            np.array([s[1] for s in second]), np.array([s[2] for s in second]),
        )  # fmt: skip

    def expand(self, x: FloatArray) -> FloatArray:
        cols = x[:, self.source]
        missing = np.isnan(cols)
        out = np.where(missing, self.fill, cols)
        ind = self.kind == MISSING
        out[:, ind] = missing[:, ind]
        bins = self.kind == BIN
        if bins.any():
            v = cols[:, bins]
            out[:, bins] = (v >= self.lo[bins]) & (v < self.hi[bins]) & ~missing[:, bins]
        hinges = self.kind == HINGE
        if hinges.any():
            out[:, hinges] = np.where(
                missing[:, hinges], 0.0, np.maximum(cols[:, hinges] - self.lo[hinges], 0.0)
            )
        cells = self.kind == CELL
        if cells.any():
            # NaN compares false: a missing value lies in no cell
            v, w = cols[:, cells], x[:, self.source2[cells]]
            out[:, cells] = (
                (v >= self.lo[cells]) & (v < self.hi[cells])
                & (w >= self.lo2[cells]) & (w < self.hi2[cells])
            )  # fmt: skip
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
        columns × outputs), and the bias (the intercept). A pair's cell counts half
        to each of its two columns."""
        parts = self.standardise(x) * self.coef
        weights = np.zeros((parts.shape[1], n_columns))
        rows = np.arange(parts.shape[1])
        paired = self._second() >= 0
        weights[rows, self.source] = np.where(paired, 0.5, 1.0)
        np.add.at(weights, (rows[paired], self._second()[paired]), 0.5)
        if combine is not None:
            weights = weights @ combine
        out: FloatArray = parts @ weights
        return out, self.intercept

    def _second(self) -> IntArray:
        if self.source2.size == self.source.size:
            return self.source2
        return np.full(self.source.size, -1, dtype=np.int64)

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {
            "source": self.source, "kind": self.kind, "lo": self.lo, "hi": self.hi,
            "fill": self.fill, "mean": self.mean, "scale": self.scale, "coef": self.coef,
            "intercept": np.array([self.intercept]), "source2": self._second(),
            "lo2": _full(self.lo2, self.source.size), "hi2": _full(self.hi2, self.source.size),
        }  # fmt: skip

    @classmethod
    def from_arrays(cls, a: dict[str, npt.NDArray[Any]]) -> Linear:
        n = a["source"].size
        return cls(
            a["source"].astype(np.int64), a["kind"].astype(np.int64), a["lo"], a["hi"],
            a["fill"], a["mean"], a["scale"], a["coef"], float(a["intercept"][0]),
            a["source2"].astype(np.int64) if "source2" in a else np.full(n, -1, dtype=np.int64),
            _full(a.get("lo2", np.empty(0)), n), _full(a.get("hi2", np.empty(0)), n),
        )  # fmt: skip


def _full(values: FloatArray, n: int) -> FloatArray:
    return values if values.size == n else np.zeros(n)


def fit_linear(
    x: FloatArray,
    y: npt.NDArray[np.int8],
    c: float,
    columns: Sequence[str] | None = None,
    pairs: Sequence[tuple[str, str]] = (),
) -> Linear:
    """Fit on the design ``x``; ``columns`` names the feature of each design column,
    which ``pairs`` (of feature names) interact."""
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    model = Linear.layout(x, columns, pairs)
    z = model.expand(x)
    model.mean = z.mean(axis=0)
    std = z.std(axis=0)
    # Numbers are standardised; 0/1 columns (category levels, cells, missing indicators)
    # keep their own scale, so the L2 penalty shrinks a rare level's effect toward the
    # average as much as its few leads leave unproven (standardising would divide a
    # level seen on 0.1 % of rows by 0.03 and all but lift the penalty off it).
    binary = np.all((z == 0) | (z == 1), axis=0)
    model.scale = np.where(binary | (std <= 1e-12), 1.0, std)
    zs = (z - model.mean) / model.scale
    fit = LogisticRegression(C=c, max_iter=1000)
    fit.fit(zs, y)
    model.coef = fit.coef_[0].astype(np.float64)
    model.intercept = float(fit.intercept_[0])
    return model


SEARCH_C = 1.0


def find_pairs(
    x: FloatArray, y: npt.NDArray[np.int8], columns: Sequence[str], progress: Any = None
) -> list[tuple[str, str]]:
    """The pairs of features that interact (:func:`aicrm.ai._interactions.search`), with
    this family's model refit between rounds."""
    return search(
        x, y, columns, lambda pairs: fit_linear(x, y, SEARCH_C, columns, pairs).raw(x), progress
    )
