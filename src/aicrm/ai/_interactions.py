"""Pairwise interactions for the logistic model, found in the data (GA²M's way).

An additive model cannot say that a demo counts more from a company of some size, or
that large companies convert later than small ones (so that a large lead still open
after 30 days is not as cold as a small one). Boosted trees can, but a tree grown
greedily on what an additive model leaves over does not find such a pair: neither
split alone reduces the loss. :func:`search` scores every pair of features at once,
as the FAST algorithm of GA²M (Lou et al., KDD 2013; InterpretML's Explainable
Boosting Machine) does: each feature is cut into a few bins (a category's levels, a
number's quantiles), and for every pair the gradient and Hessian of the log loss of
the additive model's fit are summed per cell of the two-way table. The score test
``Σ G²/(H + λ)`` over the cells, less what the two features' own bins explain, is
about χ² distributed when the pair does not interact; a pair is kept when it passes
a Bonferroni-corrected level, a few pairs a round, the model refit between rounds so
that one effect is not found twice.

A kept pair becomes one indicator column per cell seen on enough rows
(:func:`pair_cells`), shrunk by the logistic model's L2 penalty like a category
level; its contribution is split between the two features in explanations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
# A condition on a design column: lo <= x < hi (a one-hot column: 0.5 <= x)
Condition = tuple[int, float, float]

PAIR_BINS = 8  # quantile bins of a number in the search and in a pair's cells
MIN_CELL = 40  # rows a cell needs to get a column of its own
ROUNDS = 3
PER_ROUND = 2
ALPHA = 1e-3  # before the Bonferroni correction over every pair
LAMBDA = 1.0


def feature_bins(x: FloatArray, columns: Sequence[str], name: str) -> list[Condition]:
    """The bins of one feature over the design columns it owns: a category's one-hot
    columns (one bin per level), or a number cut between its distinct values (a few)
    or at its quantiles; NaN falls in none."""
    owned = [k for k, c in enumerate(columns) if c == name]
    if not owned:
        return []
    if len(owned) > 1:
        return [(k, 0.5, math.inf) for k in owned]
    k = owned[0]
    col = x[:, k]
    finite = col[~np.isnan(col)]
    distinct = np.unique(finite)
    if distinct.size < 2:
        return []
    if distinct.size <= PAIR_BINS:
        cuts = ((distinct[:-1] + distinct[1:]) / 2).tolist()
    else:
        cuts = np.unique(np.quantile(finite, np.linspace(0, 1, PAIR_BINS + 1)[1:-1])).tolist()
    bounds = [-math.inf, *cuts, math.inf]
    return [(k, bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]


def bin_of(x: FloatArray, bins: Sequence[Condition]) -> IntArray:
    """Each row's bin (-1: none, e.g. a missing number)."""
    out = np.full(x.shape[0], -1, dtype=np.int64)
    for i, (k, lo, hi) in enumerate(bins):
        col = x[:, k]
        out[(col >= lo) & (col < hi)] = i
    return out


def pair_cells(
    x: FloatArray, columns: Sequence[str], pair: tuple[str, str]
) -> list[tuple[Condition, Condition]]:
    """The cells of a pair that hold at least :data:`MIN_CELL` of these rows."""
    a, b = feature_bins(x, columns, pair[0]), feature_bins(x, columns, pair[1])
    if not a or not b:
        return []
    ia, ib = bin_of(x, a), bin_of(x, b)
    cell = np.where((ia >= 0) & (ib >= 0), ia * len(b) + ib, -1)
    counts = np.bincount(cell[cell >= 0], minlength=len(a) * len(b))
    return [(a[i // len(b)], b[i % len(b)]) for i in np.flatnonzero(counts >= MIN_CELL)]


def _scores(
    x: FloatArray, columns: Sequence[str], gradient: FloatArray, hessian: FloatArray,
    skip: set[tuple[str, str]],
) -> list[tuple[float, str, str]]:  # fmt: skip
    """Every pair's p-value under "no interaction", lowest first."""
    from scipy.stats import chi2  # type: ignore[import-untyped]

    names = list(dict.fromkeys(columns))
    bins = {n: feature_bins(x, columns, n) for n in names}
    live = [n for n in names if len(bins[n]) >= 2]
    index = {n: bin_of(x, bins[n]) for n in live}
    n_pairs = max(len(live) * (len(live) - 1) // 2, 1)
    out: list[tuple[float, str, str]] = []

    for i, a in enumerate(live):
        for b in live[i + 1 :]:
            if (a, b) in skip:
                continue
            ok = (index[a] >= 0) & (index[b] >= 0)
            ia, ib, g, h = index[a][ok], index[b][ok], gradient[ok], hessian[ok]
            na, nb = len(bins[a]), len(bins[b])
            both, cells = _gain(ia * nb + ib, na * nb, g, h)
            main_a, _ = _gain(ia, na, g, h)
            main_b, _ = _gain(ib, nb, g, h)
            stat = both - main_a - main_b
            df = max(cells - na - nb + 1, 1)
            out.append((float(chi2.sf(stat, df)) * n_pairs, a, b))
    out.sort()
    return out


def _gain(cell: IntArray, size: int, g: FloatArray, h: FloatArray) -> tuple[float, int]:
    """The score statistic of a table of cells (those with enough rows), and how many."""
    gs = np.bincount(cell, g, size)
    hs = np.bincount(cell, h, size)
    keep = np.bincount(cell, minlength=size) >= MIN_CELL
    return float(np.sum(gs[keep] ** 2 / (hs[keep] + LAMBDA))), int(keep.sum())


def search(
    x: FloatArray,
    y: npt.NDArray[np.int8],
    columns: Sequence[str],
    fit: Callable[[Sequence[tuple[str, str]]], FloatArray],
    progress: Callable[[str], None] | None = None,
) -> list[tuple[str, str]]:
    """The pairs of features (by name) that interact beyond chance. ``fit(pairs)`` fits
    the model with those pairs and returns its raw log-odds on ``x``."""
    chosen: list[tuple[str, str]] = []
    raw = fit(chosen)
    for round_ in range(ROUNDS):
        if progress is not None:
            progress("looking for interacting pairs of features")
        p = 1 / (1 + np.exp(-raw))
        found = [
            (a, b) for pvalue, a, b in _scores(x, columns, y - p, p * (1 - p), set(chosen))
            if pvalue < ALPHA
        ][:PER_ROUND]  # fmt: skip
        if not found:
            break
        chosen.extend(found)
        if round_ < ROUNDS - 1:
            raw = fit(chosen)
    return chosen
