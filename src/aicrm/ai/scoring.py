"""Lead scoring, the public surface: train, score, explain, and the stored models.

The implementation is split by noun: :mod:`aicrm.ai._window` (which leads are labels),
:mod:`aicrm.ai._prior` (the transparent fallback), :mod:`aicrm.ai._store` (the
``ai_models`` rows), :mod:`aicrm.ai._training`, :mod:`aicrm.ai._prediction`,
:mod:`aicrm.ai._bulk` and :mod:`aicrm.ai._writeback` (scoring every lead), and
:mod:`aicrm.ai._explain`. This module re-exports what the CLI, the API, the MCP server
and the web pages call. See docs/lead-scoring.md.
"""

from aicrm.ai._bulk import TOP_FACTORS, ScoreResult, score
from aicrm.ai._explain import Explanation, Factor, explain, factor_label, readable, stored_factors
from aicrm.ai._prediction import TIER_SHARES, TIERS, Predictions, predict
from aicrm.ai._prior import PRIOR_STRENGTH, SEGMENT_KEY, Prior
from aicrm.ai._store import KIND, StoredModel, fresh_model, list_models, load_active
from aicrm.ai._training import (
    HORIZON,
    LANDMARKS,
    MIN_CONVERSIONS,
    MIN_LABELLED,
    TrainResult,
    train,
)
from aicrm.ai._writeback import ANNOTATOR, WRITE_BACK

__all__ = [
    "ANNOTATOR",
    "HORIZON",
    "KIND",
    "LANDMARKS",
    "MIN_CONVERSIONS",
    "MIN_LABELLED",
    "PRIOR_STRENGTH",
    "SEGMENT_KEY",
    "TIERS",
    "TIER_SHARES",
    "TOP_FACTORS",
    "WRITE_BACK",
    "Explanation",
    "Factor",
    "Predictions",
    "Prior",
    "ScoreResult",
    "StoredModel",
    "TrainResult",
    "explain",
    "factor_label",
    "fresh_model",
    "list_models",
    "load_active",
    "predict",
    "readable",
    "score",
    "stored_factors",
    "train",
]
