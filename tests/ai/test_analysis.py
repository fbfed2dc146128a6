"""Conversion analysis: every number against values computed by hand on a fixed CRM."""

from __future__ import annotations

import math

import pytest

from aicrm.ai import analysis, report_html
from aicrm.errors import UsageError
from tests.ai.data import AS_OF, L, insert
from tests.conftest import Database

# Nine leads. Judged (created ≥ 90 days before AS_OF): all but W6. Converted within
# 90 days: W1, W2, R1, R2. W4 converted, but on day 120.
FIXED = [
    L("web", 300, 10, "tech", [(2, "contacted"), (5, "qualified")]),  # W1
    L("web", 300, 40, "tech", [(3, "contacted"), (20, "qualified")]),  # W2
    L("web", 300, None, "retail", [(4, "contacted"), (10, "lost")]),  # W3
    L("web", 250, 120, "retail", [(2, "contacted"), (60, "qualified")]),  # W4
    L("web", 200, None, "tech", []),  # W5
    L("web", 30, 5, "tech", [(1, "contacted"), (3, "qualified")]),  # W6, too young
    L("referral", 300, 20, "tech", [(1, "contacted"), (8, "qualified")]),  # R1
    L("referral", 150, 30, "retail", [(5, "contacted"), (10, "qualified")]),  # R2
    L("referral", 150, None, "retail", [(2, "contacted"), (4, "unqualified")]),  # R3
]


@pytest.fixture
def fixed(crm_db: Database) -> analysis.Report:
    with crm_db.connect() as conn:
        insert(conn, FIXED)
        return analysis.analyze(conn, as_of=AS_OF)


@pytest.mark.slow
def test_rates_with_wilson_intervals(fixed: analysis.Report) -> None:
    assert (fixed.leads, fixed.labelled) == (9, 8)
    assert (fixed.overall["converted"], fixed.overall["rate"]) == (4, 0.5)
    web, referral = fixed.by_source  # most leads first
    assert (web["segment"], web["leads"], web["converted"], web["rate"]) == ("web", 5, 2, 0.4)
    assert (referral["leads"], referral["converted"]) == (3, 2)
    # Wilson, 2 of 5 at z = 1.96: centre (0.4 + 1.96²/10) / (1 + 1.96²/5) = 0.4434,
    # half-width 1.96·√(0.24/5 + 1.96²/100) / (1 + 1.96²/5) = 0.3258.
    assert web["ci_low"] == pytest.approx(0.1176, abs=1e-4)
    assert web["ci_high"] == pytest.approx(0.7693, abs=1e-4)
    from scipy.stats import binomtest  # type: ignore[import-untyped]

    ci = binomtest(2, 3).proportion_ci(method="wilson")
    assert (referral["ci_low"], referral["ci_high"]) == pytest.approx((ci.low, ci.high), abs=1e-6)
    industries = {r["segment"]: (r["leads"], r["converted"]) for r in fixed.by_industry}
    assert industries == {"tech": (4, 3), "retail": (4, 1)}
    cohorts = {r["segment"]: (r["leads"], r["converted"]) for r in fixed.by_cohort}
    assert cohorts == {"2025-08": (4, 3), "2025-09": (1, 0), "2025-11": (1, 0), "2026-01": (2, 1)}


def test_time_to_convert_over_every_converted_lead(fixed: analysis.Report) -> None:
    web, referral = fixed.by_source
    # web converted after 5, 10, 40 and 120 days: median 25; p90 at rank 2.7: 40 + 0.7·80
    assert (web["median_days"], web["p90_days"]) == pytest.approx((25, 96))
    assert (referral["median_days"], referral["p90_days"]) == pytest.approx((25, 29))


def test_the_funnel_and_time_in_each_stage(fixed: analysis.Report) -> None:
    funnel = {r["stage"]: r for r in fixed.funnel}
    assert [funnel[s]["reached"] for s in analysis.STAGES] == [8, 7, 5, 5]
    assert funnel["new"]["drop_off"] == pytest.approx(1 / 8)
    assert funnel["contacted"]["share_of_previous"] == pytest.approx(7 / 8)
    assert funnel["contacted"]["drop_off"] == pytest.approx(2 / 7)
    assert funnel["qualified"]["drop_off"] == 0 and funnel["converted"]["drop_off"] is None
    # completed periods (all nine leads): new 1,1,2,2,2,3,4,5; contacted 2,2,3,5,6,7,17,58;
    # qualified 2,5,12,20,20,60
    assert funnel["new"]["median_days"] == pytest.approx(2)
    assert funnel["contacted"]["median_days"] == pytest.approx(5.5)
    assert funnel["qualified"]["median_days"] == pytest.approx(16)


def test_without_a_model_drivers_come_from_the_rates(fixed: analysis.Report) -> None:
    assert "no scoring model" in fixed.drivers["source"]
    assert fixed.changes["segments"] == [] and fixed.changes["tested"] == []


def test_a_changed_segment_is_found_with_its_test(crm_db: Database) -> None:
    past = [L("ads", 300, 10 if i < 4 else None) for i in range(40)]
    recent = [L("ads", 120, 10 if i < 20 else None) for i in range(40)]
    steady = [L("web", 300 if i < 40 else 120, 10 if i % 4 == 0 else None) for i in range(80)]
    with crm_db.connect() as conn:
        insert(conn, past + recent + steady)
        report = analysis.analyze(conn, as_of=AS_OF)
    found = {(r["dimension"], r["segment"]): r for r in report.changes["segments"]}
    ads = found[("source", "ads")]
    # pooled 24/80 = 0.3; z = (0.5 − 0.1) / √(0.3·0.7·(1/40 + 1/40)) = 3.9036
    z = 0.4 / math.sqrt(0.3 * 0.7 * (2 / 40))
    assert ads["test"] == "two-proportion z-test"
    assert ads["p_value"] == pytest.approx(math.erfc(z / math.sqrt(2)), rel=1e-3)
    assert (ads["past_rate"], ads["recent_rate"]) == (0.1, 0.5) and "rose" in ads["sentence"]
    assert ("source", "web") not in found


def test_statistics_helpers() -> None:
    assert analysis.wilson(0, 0) == (0.0, 0.0)
    low, high = analysis.wilson(0, 10)
    assert low == 0 and high == pytest.approx(0.2775, abs=1e-4)
    assert analysis.two_proportions(1, 10, 0, 10)[1] == "Fisher's exact test"
    assert analysis.benjamini_hochberg([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.04, 0.04])


def test_the_html_report_is_self_contained(fixed: analysis.Report) -> None:
    page = report_html.render(fixed)
    assert page.startswith("<!DOCTYPE html>") and page.count("data:image/png;base64,") == 4
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "Conversion by source" in page and "referral" in page


def test_an_empty_crm_is_refused(crm_db: Database) -> None:
    with crm_db.connect() as conn, pytest.raises(UsageError, match="no leads"):
        analysis.analyze(conn)
