"""The models' plain parameters: same predictions as LightGBM, additive explanations."""

from __future__ import annotations

import numpy as np

from aicrm.ai import _features as F, _model as M


def _data(n: int = 3000, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    x[rng.random(n) < 0.1, 2] = np.nan
    z = 1.2 * x[:, 0] - 0.8 * np.nan_to_num(x[:, 2]) + 0.9 * (x[:, 1] > 0.5) * x[:, 3] - 1.5
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.int8)
    return x, y


def test_trees_reproduce_lightgbm_and_their_contributions_add_up() -> None:
    from aicrm.ai import _trees as T

    x, y = _data()
    x[:200, 4] = np.nan  # missing values in a column, scored as LightGBM scores them
    booster = T.boosting_fit(x, y)
    trees = T.Trees.from_booster(booster)
    expected = booster.predict(x, raw_score=True, num_iteration=booster.best_iteration or None)
    np.testing.assert_allclose(trees.raw(x), expected, atol=1e-9)
    unseen = x.copy()
    unseen[::3, 0] = np.nan  # NaN where training had none: LightGBM reads it as 0
    np.testing.assert_allclose(
        trees.raw(unseen),
        booster.predict(unseen, raw_score=True, num_iteration=booster.best_iteration or None),
        atol=1e-9,
    )
    contrib, bias = trees.contributions(x, x.shape[1], chunk=700)
    np.testing.assert_allclose(contrib.sum(axis=1) + bias, expected, atol=1e-9)
    assert abs(contrib[:, 4]).max() < abs(contrib[:, 0]).max()  # x4 is noise


def test_the_tree_walk_is_the_same_in_chunks_and_combine_sums_columns() -> None:
    x, y = _data(seed=3)
    trees = M.fit_trees(x, y)
    np.testing.assert_array_equal(trees.leaves(x), trees.leaves(x, chunk=500))
    per_column, bias = trees.contributions(x, x.shape[1], chunk=900)
    combine = np.zeros((5, 2))
    combine[[0, 1, 2], 0] = 1.0  # columns 0-2 -> output 0, 3-4 -> output 1
    combine[[3, 4], 1] = 1.0
    combined, same_bias = trees.contributions(x, x.shape[1], combine)
    assert same_bias == bias
    np.testing.assert_allclose(combined[:, 0], per_column[:, :3].sum(axis=1), atol=1e-12)
    np.testing.assert_allclose(combined[:, 1], per_column[:, 3:].sum(axis=1), atol=1e-12)
    linear = M.fit_linear(x, y, 1.0)
    np.testing.assert_allclose(
        linear.contributions(x, 5, combine)[0],
        linear.contributions(x, 5)[0] @ combine,
        atol=1e-12,
    )


def test_a_scorer_survives_its_npz_and_explains_exactly() -> None:
    x, y = _data(seed=1)
    for inner in (M.fit_linear(x, y, 1.0), M.fit_trees(x, y)):
        scorer = M.Scorer(
            "logistic" if isinstance(inner, M.Linear) else "boosting", inner, 0.9, -0.1
        )
        again = M.Scorer.from_npz(scorer.algorithm, scorer.to_npz())
        np.testing.assert_allclose(again.predict(x), scorer.predict(x), atol=1e-12)
        contrib, bias = again.explain(x)
        np.testing.assert_allclose(contrib.sum(axis=1) + bias, again.calibrated_logit(x), atol=1e-9)


def test_selection_picks_a_calibrated_model_by_grouped_cross_validation() -> None:
    x, y = _data(4000, seed=2)
    groups = np.arange(len(y)) // 2  # two observations per "lead"
    first = np.arange(len(y)) % 2 == 0
    scorer, candidates, best, final = M.select(x, y, groups, first)
    assert {c.name for c in candidates} == {"logistic", "boosting"}
    lowest = min(c.metrics["log_loss"] for c in candidates)
    assert best.metrics["within_one_se"] and best.metrics["log_loss"] <= lowest + 0.01
    simpler = candidates[: candidates.index(best)]
    assert all("within_one_se" not in c.metrics for c in simpler)
    assert final["auc"] > 0.7 and final["calibration_error"] < 0.05
    assert 0.5 < scorer.a < 2.0


def test_metrics_against_hand_computed_values() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    assert M.auc(y, p) == 0.75  # 3 of the 4 positive-negative pairs ordered right
    assert np.isclose(M.brier(y, p), (0.01 + 0.16 + 0.4225 + 0.04) / 4)
    assert np.isnan(M.auc(np.array([1, 1]), np.array([0.2, 0.3])))
    table = M.calibration_table(y, p, bins=2)
    assert table == [
        {"n": 2, "predicted": 0.225, "observed": 0.5},
        {"n": 2, "predicted": 0.6, "observed": 0.5},
    ]


def test_encoding_one_hot_logs_and_clips() -> None:
    features = [
        F.Feature("source", "category", categories=["web", "referral"]),
        F.Feature("attr:employees", "numeric", key="employees"),
        F.Feature("has_name", "binary"),
    ]
    values = np.array(
        [[1, 10, 1], [2, 20000, 1], [0, np.nan, 1], [-1, 30, 1], [1, 12, 1], [1, 11, 1]],
        dtype=float,
    )
    encoding = F.fit_encoding(features, values)
    assert [(c.feature, c.value) for c in encoding.columns] == [
        ("source", "web"), ("source", "referral"), ("source", "(missing)"),
        ("source", "(other)"), ("attr:employees", None),
    ]  # fmt: skip
    assert features[1].log  # skewed positive numbers are logged
    out = F.encode(features, encoding, np.array([[2, 1e9, 1]], dtype=float))
    assert out[0, :4].tolist() == [0, 1, 0, 0]
    assert out[0, 4] == np.log1p(20000)  # clipped to the training range
