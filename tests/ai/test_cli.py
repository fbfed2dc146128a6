"""``aicrm ai …`` and ``aicrm analyze conversions`` as real processes."""

from __future__ import annotations

import json

import pytest

from tests.ai.data import AS_OF, L, cli, insert
from tests.ai.test_analysis import FIXED
from tests.conftest import Database

DAY = AS_OF.date().isoformat()


def _one_line_error(result, code: int, text: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr and text in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_score_and_explain(trained_db: Database) -> None:
    scored = cli(trained_db, "ai", "score", "--as-of", DAY, "--json")
    assert scored.returncode == 0, scored.stderr
    data = json.loads(scored.stdout)
    assert data["method"] == "model" and data["scored"] == sum(data["tiers"].values())
    lead = str(  # an open lead: a converted or lost one has no score to explain
        trained_db.scalar(
            "SELECT id FROM leads WHERE status IN "
            "(SELECT name FROM lead_statuses WHERE category = 'open') ORDER BY id LIMIT 1"
        )
    )
    text = cli(trained_db, "ai", "explain", lead)
    assert text.returncode == 0, text.stderr
    assert "tier" in text.stdout and "log-odds" in text.stdout and "Source" in text.stdout
    explained = json.loads(cli(trained_db, "ai", "explain", lead, "--json").stdout)
    assert explained["lead_id"] == lead and explained["factors"]
    listed = json.loads(cli(trained_db, "ai", "models", "--json").stdout)
    assert len(listed) == 1 and listed[0]["active"]
    _one_line_error(
        cli(trained_db, "ai", "explain", "3f2b8c1e-7d4a-4f6b-9a51-2c0e8d7b6a10"), 4, "No lead"
    )
    _one_line_error(cli(trained_db, "ai", "explain", "not-an-id"), 2, "not a valid lead id")


@pytest.mark.slow
def test_train_on_an_empty_crm_and_score_without_a_model(crm_db: Database) -> None:
    _one_line_error(cli(crm_db, "ai", "train"), 2, "no leads yet")
    _one_line_error(cli(crm_db, "ai", "score"), 4, "aicrm ai train")
    _one_line_error(cli(crm_db, "analyze", "conversions"), 2, "no leads yet")


@pytest.mark.slow
def test_train_falls_back_and_says_so(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        insert(conn, [L("web", 200 + i, 10 if i % 3 == 0 else None, "tech") for i in range(40)])
    result = cli(crm_db, "ai", "train", "--as-of", DAY)
    assert result.returncode == 0, result.stderr
    assert "prior" in result.stdout and "note: Scores are a smoothed prior" in result.stdout
    data = json.loads(cli(crm_db, "ai", "train", "--as-of", DAY, "--json").stdout)
    assert data["method"] == "prior" and data["leads"] == 40 and data["conversions"] == 14


@pytest.mark.slow
def test_analyze_conversions_in_text_json_and_html(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        insert(conn, FIXED)
    text = cli(crm_db, "analyze", "conversions", "--as-of", DAY)
    assert text.returncode == 0, text.stderr
    assert "conversion by source" in text.stdout and "funnel" in text.stdout
    page = crm_db.workdir / "report.html"
    data = json.loads(
        cli(crm_db, "analyze", "conversions", "--as-of", DAY, "--json", "--html", str(page)).stdout
    )
    assert data["overall"]["rate"] == 0.5 and data["by_source"][0]["segment"] == "web"
    assert page.read_text().count("data:image/png;base64,") == 4
    _one_line_error(
        cli(crm_db, "analyze", "conversions", "--html", str(crm_db.workdir)), 2, "is a folder"
    )
