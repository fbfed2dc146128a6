"""The logistic model's hinges and interacting pairs: found when real, not when not,
explained exactly, and models stored before them still score."""

from __future__ import annotations

import numpy as np

from aicrm.ai import _interactions as I, _model as M
from aicrm.ai._linear import BIN, CELL, HINGE, Linear, find_pairs, fit_linear


def _data(n: int, interact: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    demo = (rng.random(n) < 0.3).astype(float)
    size = rng.normal(size=n)
    size[rng.random(n) < 0.05] = np.nan
    level = rng.integers(0, 3, n)
    onehot = np.eye(3)[level]
    noise = rng.normal(size=n)
    s = np.nan_to_num(size)
    z = -1.5 + 0.8 * demo + 0.5 * onehot[:, 0] - 0.6 * (s - 0.3) ** 2
    if interact:
        z += 1.2 * demo * (s > 0.5)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.int8)
    x = np.column_stack([demo, size, onehot, noise])
    return x, y, ["demo", "size", "level", "level", "level", "noise"]


def test_a_real_interaction_is_found_and_none_is_invented() -> None:
    x, y, columns = _data(20000, interact=True)
    assert find_pairs(x, y, columns) == [("demo", "size")]
    x, y, columns = _data(20000, interact=False)
    assert find_pairs(x, y, columns) == []


def test_pairs_bend_the_curve_and_the_contributions_still_add_up() -> None:
    x, y, columns = _data(20000, interact=True, seed=1)
    plain = fit_linear(x, y, 1.0, columns)
    paired = fit_linear(x, y, 1.0, columns, [("demo", "size")])
    assert (plain.kind == HINGE).any() and not (plain.kind == CELL).any()
    assert (paired.kind == CELL).any()
    test, y_test, _ = _data(20000, interact=True, seed=2)
    assert M.auc(y_test, paired.raw(test)) > M.auc(y_test, plain.raw(test)) + 0.005
    scorer = M.Scorer("logistic", paired, 0.9, -0.1)
    again = M.Scorer.from_npz("logistic", scorer.to_npz())
    np.testing.assert_allclose(again.predict(test), scorer.predict(test), atol=1e-12)
    contrib, bias = again.explain(test)
    np.testing.assert_allclose(contrib.sum(axis=1) + bias, again.calibrated_logit(test), atol=1e-9)
    # a cell's part goes half to each of its two features: nothing to the others
    only_cells = Linear.from_arrays(paired.arrays())
    only_cells.coef = np.where(paired.kind == CELL, paired.coef, 0.0)
    parts, _ = only_cells.contributions(test, test.shape[1])
    np.testing.assert_allclose(parts[:, 0], parts[:, 1], atol=1e-12)
    assert np.abs(parts[:, 2:]).max() == 0.0


def test_a_model_stored_before_hinges_and_pairs_still_scores() -> None:
    x, y, _columns = _data(3000, interact=False)
    old = fit_linear(x, y, 1.0)
    arrays = {k: v for k, v in old.arrays().items() if k not in ("source2", "lo2", "hi2")}
    # what the older layout stored: a quantile-bin indicator on a numeric column
    arrays["kind"] = np.where(old.kind == HINGE, BIN, old.kind)
    arrays["hi"] = np.where(old.kind == HINGE, np.inf, old.hi)
    loaded = Linear.from_arrays(arrays)
    expected = loaded.standardise(x) @ loaded.coef + loaded.intercept
    np.testing.assert_allclose(loaded.raw(x), expected)
    contrib, bias = loaded.contributions(x, x.shape[1])
    np.testing.assert_allclose(contrib.sum(axis=1) + bias, loaded.raw(x), atol=1e-9)
    bins = loaded.expand(x)[:, loaded.kind == BIN]
    assert set(np.unique(bins)) <= {0.0, 1.0}


def test_cells_need_enough_rows_and_a_missing_value_lies_in_none() -> None:
    x, y, columns = _data(2000, interact=False)
    cells = I.pair_cells(x, columns, ("demo", "size"))
    assert cells and len(cells) <= 2 * I.PAIR_BINS
    model = fit_linear(x, y, 1.0, columns, [("demo", "size")])
    expanded = model.expand(x)[:, model.kind == CELL]
    assert expanded[np.isnan(x[:, 1])].sum() == 0
    assert np.all(expanded[~np.isnan(x[:, 1])].sum(axis=1) <= 1)
