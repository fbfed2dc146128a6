"""The boosting family of scoring models: gradient-boosted trees fit by LightGBM and
kept as plain arrays (every tree's nodes, flat), walked by numpy, explained by path
decomposition (Saabas).

The trees are read from LightGBM's public JSON dump of a fitted booster; the model
text itself is never stored or loaded."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

NODE_FIELDS = ("feature", "threshold", "missing_left", "left", "right", "leaf", "value")
VALIDATION_FRACTION = 0.15
BOOSTING = {
    "objective": "binary",
    "learning_rate": 0.1,
    "num_leaves": 15,
    "min_data_in_leaf": 40,
    "lambda_l2": 1.0,
    "verbosity": -1,
    "deterministic": True,
    "force_row_wise": True,
}
MAX_TREES = 150
PATIENCE = 10


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
    def from_booster(cls, booster: Any) -> Trees:
        """The trees of a fitted LightGBM booster, from its public JSON dump
        (``Booster.dump_model``): no private attribute is read."""
        dump = booster.dump_model(num_iteration=booster.best_iteration or None)
        nodes: dict[str, list[Any]] = {k: [] for k in NODE_FIELDS}
        roots: list[int] = []
        depth = 0
        for tree in dump["tree_info"]:
            roots.append(len(nodes["leaf"]))
            depth = max(depth, _add_tree(tree["tree_structure"], nodes))
        return cls(
            np.array(roots, dtype=np.int64), np.array(nodes["feature"], dtype=np.int64),
            np.array(nodes["threshold"], dtype=np.float64),
            np.array(nodes["missing_left"], dtype=bool), np.array(nodes["left"], dtype=np.int64),
            np.array(nodes["right"], dtype=np.int64), np.array(nodes["leaf"], dtype=bool),
            np.array(nodes["value"], dtype=np.float64), 0.0, depth,
        )  # fmt: skip

    @property
    def bias(self) -> float:
        return self.baseline + float(self.value[self.roots].sum())

    def raw(self, x: FloatArray) -> FloatArray:
        leaves = self.leaves(x)
        out: FloatArray = self.value[leaves].sum(axis=1) + self.baseline
        return out

    def leaves(self, x: FloatArray, chunk: int = 20_000) -> npt.NDArray[np.intp]:
        """The leaf (a global node number) each row reaches in each tree: (n, trees);
        numpy walks all trees one level at a time."""
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


def _add_tree(root: dict[str, Any], nodes: dict[str, list[Any]]) -> int:
    """Append one dumped tree's nodes (depth first, numbered globally); inner nodes get
    the count-weighted mean of their leaves as their value, so that a path's value
    changes sum to its leaf's value. Returns the tree's depth."""
    depth = 0
    stack: list[tuple[dict[str, Any], int, int, bool]] = [(root, -1, 0, False)]
    counts: list[float] = []
    while stack:
        node, parent, level, is_right = stack.pop()
        index = len(nodes["leaf"])
        if parent >= 0:
            nodes["right" if is_right else "left"][parent] = index
        depth = max(depth, level)
        if "leaf_value" in node:
            for key, value in (("feature", 0), ("threshold", 0.0), ("missing_left", False),
                               ("left", 0), ("right", 0), ("leaf", True),
                               ("value", float(node["leaf_value"]))):  # fmt: skip
                nodes[key].append(value)
            counts.append(float(node.get("leaf_count", 0)))
            continue
        if node.get("decision_type", "<=") != "<=":
            raise ValueError("categorical splits are not supported")
        threshold = float(node["threshold"])
        missing = node.get("missing_type", "None")
        if missing == "Zero":
            raise ValueError("zero-as-missing splits are not supported")
        # NaN follows default_left when missing values were seen in training; otherwise
        # LightGBM reads NaN as 0
        missing_left = bool(node["default_left"]) if missing == "NaN" else threshold >= 0
        for key, value in (("feature", int(node["split_feature"])), ("threshold", threshold),
                           ("missing_left", missing_left), ("left", 0), ("right", 0),
                           ("leaf", False), ("value", 0.0)):  # fmt: skip
            nodes[key].append(value)
        counts.append(float(node.get("internal_count", 0)))
        stack.append((node["right_child"], index, level + 1, True))
        stack.append((node["left_child"], index, level + 1, False))
    _expected_values(nodes, len(nodes["leaf"]) - len(counts), counts)
    return depth


def _expected_values(nodes: dict[str, list[Any]], start: int, counts: list[float]) -> None:
    """Inner nodes' expected values, children before parents (depth-first numbering
    puts every child after its parent)."""
    for i in range(len(counts) - 1, -1, -1):
        k = start + i
        if nodes["leaf"][k]:
            continue
        lc, rc = nodes["left"][k], nodes["right"][k]
        wl, wr = counts[lc - start], counts[rc - start]
        total = wl + wr
        nodes["value"][k] = (
            (nodes["value"][lc] * wl + nodes["value"][rc] * wr) / total
            if total > 0
            else 0.5 * (nodes["value"][lc] + nodes["value"][rc])
        )


def boosting_fit(x: FloatArray, y: npt.NDArray[np.int8], seed: int = 0) -> Any:
    """A LightGBM booster: small trees, early stopping on a random 15 % of the rows."""
    import lightgbm

    rng = np.random.default_rng(seed)
    valid = rng.random(len(y)) < VALIDATION_FRACTION
    if valid.all() or not valid.any() or len(np.unique(y[valid])) < 2:
        valid = np.zeros(len(y), dtype=bool)
    params = BOOSTING | {"seed": seed, "num_threads": threads()}
    train = lightgbm.Dataset(x[~valid], y[~valid], params={"verbosity": -1})
    sets: list[Any] = []
    callbacks: list[Callable[..., Any]] = []
    if valid.any():
        sets = [lightgbm.Dataset(x[valid], y[valid], reference=train)]
        callbacks = [lightgbm.early_stopping(PATIENCE, verbose=False)]
    return lightgbm.train(
        params, train, num_boost_round=MAX_TREES, valid_sets=sets, callbacks=callbacks
    )


def available() -> bool:
    """Whether LightGBM loads here. Its wheel links the system's OpenMP runtime
    (``libgomp.so.1``, Debian's ``libgomp1``), which a bare Python image may lack:
    training then leaves boosting out and chooses among the logistic candidates;
    scoring a stored tree model needs only numpy."""
    try:
        import lightgbm  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def fit_trees(x: FloatArray, y: npt.NDArray[np.int8], seed: int = 0) -> Trees:
    return Trees.from_booster(boosting_fit(x, y, seed))


def threads() -> int:
    return max(1, int(os.environ.get("AICRM_AI_THREADS", "1")))
