"""The design matrix: how raw feature values become the columns a model reads (one-hot
categories, log1p of skewed numbers, numbers clipped to their training range)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from aicrm.ai._feature_spec import Feature

FloatArray = npt.NDArray[np.float64]


@dataclass
class Column:
    """One column of the design matrix: which feature it encodes, and how."""

    feature: str
    value: str | None  # the category of a one-hot column; None for a numeric one


@dataclass
class Encoding:
    """How raw values become the design matrix: one-hot categories, log1p, and the
    columns that were constant in training left out."""

    columns: list[Column]
    logs: list[bool]
    # numeric columns are clipped to their training range: no model extrapolates
    ranges: list[list[float] | None] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": [asdict(c) for c in self.columns],
            "logs": self.logs,
            "ranges": self.ranges,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Encoding:
        return cls(
            [Column(c["feature"], c["value"]) for c in data["columns"]],
            data["logs"],
            data.get("ranges", []),
        )


def fit_encoding(features: Sequence[Feature], values: FloatArray) -> Encoding:
    logs: list[bool] = []
    columns: list[Column] = []
    for j, feature in enumerate(features):
        x = values[:, j]
        if feature.kind == "category":
            logs.append(False)
            codes = {int(c) for c in np.unique(x[~np.isnan(x)])}
            names = {0: "(missing)", -1: "(other)"} | {
                i + 1: c for i, c in enumerate(feature.categories)
            }
            present = [names[c] for c in sorted(codes, key=_code_order) if c in names]
            if len(present) >= 2:
                columns.extend(Column(feature.name, v) for v in present)
            continue
        finite = x[~np.isnan(x)]
        log = bool(
            feature.kind == "numeric"
            and finite.size
            and finite.min() >= 0
            and np.quantile(finite, 0.99) > 20 * (np.median(finite) + 1)
        )
        logs.append(log)
        feature.log = log
        if finite.size and (np.ptp(finite) > 0 or finite.size < x.size):
            columns.append(Column(feature.name, None))
    encoding = Encoding(columns, logs)
    encoded = encode(features, encoding, values)
    for k, column in enumerate(columns):
        col = encoded[:, k]
        finite = col[~np.isnan(col)]
        encoding.ranges.append(
            [float(finite.min()), float(finite.max())]
            if column.value is None and finite.size
            else None
        )
    return encoding


def _code_order(code: int) -> int:
    return {0: 10_000, -1: 10_001}.get(code, code)


def encode(features: Sequence[Feature], encoding: Encoding, values: FloatArray) -> FloatArray:
    """The design matrix (NaN left in numeric columns: each model handles it)."""
    index = {f.name: j for j, f in enumerate(features)}
    codes: dict[str, dict[str, int]] = {
        f.name: {"(missing)": 0, "(other)": -1} | {c: i + 1 for i, c in enumerate(f.categories)}
        for f in features
        if f.kind == "category"
    }
    out = np.empty((values.shape[0], len(encoding.columns)), dtype=np.float64)
    for k, column in enumerate(encoding.columns):
        j = index[column.feature]
        x = values[:, j]
        if column.value is not None:
            out[:, k] = (x == codes[column.feature][column.value]).astype(np.float64)
        else:
            out[:, k] = np.log1p(np.clip(x, 0, None)) if features[j].log else x
            bounds = encoding.ranges[k] if k < len(encoding.ranges) else None
            if bounds is not None:
                out[:, k] = np.clip(out[:, k], bounds[0], bounds[1])
    return out
