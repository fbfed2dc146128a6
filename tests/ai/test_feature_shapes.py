"""Categories and numbers as users store them: every level seen often enough keeps its
own column, however rare next to the others, and its effect is shrunk, not cut to
"(other)"; a number whose effect is not monotone is explained as such."""

from __future__ import annotations

import random

import numpy as np
import pytest

from aicrm.ai import _model as learn, analysis, scoring
from aicrm.ai._features import discover, encode, fit_encoding, training_frame
from tests.ai.data import AS_OF, L, insert
from tests.conftest import Database

COMMON = [f"industry-{k:02d}" for k in range(20)]


def _leads(seed: int = 11) -> list[L]:
    """1,200 leads in 20 common industries converting at 10 %, and 24 in a rare one
    (2 % of the leads, ranked 21st by count: a top-15 cut drops it) converting at 75 %."""
    rng = random.Random(seed)
    leads = []
    for i in range(1200):
        converts = rng.random() < 0.10
        leads.append(
            L(rng.choice(("web", "referral")), 100 + i % 400, converted=5.0 if converts else None,
              industry=COMMON[i % len(COMMON)])
        )  # fmt: skip
    for i in range(24):
        leads.append(
            L(rng.choice(("web", "referral")), 100 + i * 13, converted=5.0 if i % 4 else None,
              industry="biotech")
        )  # fmt: skip
    return leads


@pytest.mark.slow  # inserts 1,224 leads and cross-validates
def test_a_rare_category_with_a_strong_effect_keeps_its_column_and_ranks_first(
    crm_db: Database,
) -> None:
    leads = _leads()
    since = AS_OF.replace(year=2000)
    with crm_db.connect() as conn:
        insert(conn, leads)
        features = discover(conn, horizon=90, as_of=AS_OF, since=since, n_leads=len(leads))
        industry = next(f for f in features if f.name == "attr:industry")
        assert "biotech" in industry.categories
        assert len(industry.categories) == len(COMMON) + 1
        frame = training_frame(conn, features, horizon=90, as_of=AS_OF, since=since, landmarks=[0])
    assert frame.labels is not None
    encoding = fit_encoding(features, frame.values)
    assert any(c.feature == "attr:industry" and c.value == "biotech" for c in encoding.columns)
    x = encode(features, encoding, frame.values)
    scorer, _candidates, _best, _final = learn.select(
        x, frame.labels, frame.groups, frame.landmarks == 0
    )
    p = scorer.predict(x)
    code = industry.categories.index("biotech") + 1
    rare = frame.values[:, [f.name for f in features].index("attr:industry")] == code
    # every biotech lead scores above every lead of the common industries, and the
    # shrinkage keeps its score below the raw 75 % it showed on 24 leads
    assert p[rare].min() > p[~rare].max()
    assert 0.2 < float(np.mean(p[rare])) < 0.75


def test_a_u_shaped_effect_is_called_u_shaped_and_a_steady_one_steady() -> None:
    rng = np.random.default_rng(0)
    size = rng.uniform(0, 1000, 4000)
    noise = rng.normal(0, 0.05, size.size)
    u = analysis.numeric_effect("Company size", size, ((size - 500) / 250) ** 2 + noise)
    assert u["shape"] == "u-shaped"
    assert "U-shaped" in u["sentence"] and "lowest from" in u["sentence"]
    peaked = analysis.numeric_effect("Company size", size, -(((size - 500) / 250) ** 2))
    assert peaked["shape"] == "peaked" and "highest from" in peaked["sentence"]
    steady = analysis.numeric_effect("Company size", size, size / 500 + noise)
    assert steady["shape"] == "rising"
    assert steady["sentence"].startswith("More company size raises the odds")


def _u_shaped(seed: int = 5) -> list[L]:
    """Small and large companies convert at 45 %, middle-sized ones at 4 %."""
    rng = random.Random(seed)
    leads = []
    for i in range(1500):
        employees = round(10 ** rng.uniform(0, 4))
        rate = 0.45 if employees < 30 or employees > 1000 else 0.04
        leads.append(
            L(rng.choice(("web", "referral")), 100 + i % 500,
              converted=5.0 if rng.random() < rate else None,
              attributes={"employees": employees})
        )  # fmt: skip
    return leads


@pytest.mark.slow  # trains a model on 1,500 leads
def test_the_drivers_call_a_u_shaped_attribute_u_shaped(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        insert(conn, _u_shaped())
        scoring.train(conn, as_of=AS_OF, actor="test")
        report = analysis.analyze(conn, as_of=AS_OF)
    assert report.drivers["source"].startswith("model")
    factor = next(f for f in report.drivers["factors"] if f["feature"] == "attr:employees")
    assert factor["shape"] == "u-shaped", factor
    assert "U-shaped" in factor["sentence"]
    assert not any("More employees" in s for s in report.drivers["sentences"])
