"""The measures of a scoring model's quality: AUC, Brier score, log loss, and the
calibration table (observed against predicted rate in deciles)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def sigmoid(z: FloatArray) -> FloatArray:
    out: FloatArray = 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))
    return out


def logit(p: FloatArray) -> FloatArray:
    q = np.clip(p, 1e-9, 1 - 1e-9)
    out: FloatArray = np.log(q / (1 - q))
    return out


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
