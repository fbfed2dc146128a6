"""Converted and lost leads get their outcome, never a chance to convert (aicrm.ai.closed);
each lead's score trend is kept (migration 011, aicrm.ai.trend)."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from typing import Any

import pytest

from aicrm.ai import scoring, trend
from aicrm.errors import NotFound
from tests.ai.data import AS_OF, cli
from tests.conftest import Database

pytestmark = pytest.mark.slow  # the module's fixture generates a CRM and trains (~10 s)

DAY = AS_OF.date().isoformat()
CLOSED = (
    "SELECT l.id::text FROM leads l JOIN lead_statuses s ON s.name = l.status "
    "WHERE s.category = %s ORDER BY l.id LIMIT 1"
)


def _entry(db: Database, lead_id: str) -> tuple[float | None, Any]:
    row = db.execute(
        "SELECT ai_score, ai_annotations -> 'lead_scoring' FROM leads WHERE id = %s", (lead_id,)
    )[0]
    return row[0], row[1]


def test_include_converted_writes_outcomes_not_probabilities(trained_db: Database) -> None:
    with trained_db.connect() as conn:
        result = scoring.score(conn, include_converted=True, as_of=AS_OF)
    counts = dict(
        trained_db.execute(
            "SELECT s.category, count(*) FROM leads l JOIN lead_statuses s ON s.name = l.status "
            "GROUP BY 1"
        )
    )
    assert counts["converted"] > 0 and counts["lost"] > 0
    assert result.scored == counts["open"] == sum(result.tiers.values())
    assert result.closed == counts["converted"] + counts["lost"]
    # no closed lead carries a probability, in the column or in the annotation
    assert (
        trained_db.scalar(
            "SELECT count(*) FROM leads l JOIN lead_statuses s ON s.name = l.status "
            "WHERE s.category <> 'open' AND (ai_score IS NOT NULL "
            "OR ai_annotations #> '{lead_scoring,values,score}' IS NOT NULL)"
        )
        == 0
    )
    converted = trained_db.execute(
        "SELECT conversion_date, ai_annotations -> 'lead_scoring' -> 'values' FROM leads "
        "WHERE is_converted ORDER BY id LIMIT 1"
    )[0]
    when, values = converted
    assert values["outcome"] == "converted" and values["status"] == "converted"
    assert values["summary"] == f"converted on {when.astimezone(AS_OF.tzinfo):%Y-%m-%d}"
    assert values["closed_at"].startswith(f"{when.astimezone(AS_OF.tzinfo):%Y-%m-%dT%H:%M}")
    assert "score" not in values and "tier" not in values and "factors" not in values


def test_a_lead_lost_after_scoring_loses_its_score_at_the_next_run(trained_db: Database) -> None:
    lead = str(trained_db.scalar("SELECT id FROM leads WHERE status = 'new' ORDER BY id LIMIT 1"))
    untouched = str(trained_db.scalar(CLOSED, ("lost",)))
    with trained_db.connect() as conn:
        scoring.score(conn, as_of=AS_OF)
    score, entry = _entry(trained_db, lead)
    assert score is not None and entry["values"]["tier"] in "ABCD"
    assert _entry(trained_db, untouched) == (None, None)  # never scored: left alone
    trained_db.execute("UPDATE leads SET status = 'lost' WHERE id = %s", (lead,))
    lost_at = trained_db.scalar(
        "SELECT max(changed_at) FROM crm_history WHERE row_id = %s AND changes ? 'status'",
        (lead,),
    )
    with trained_db.connect() as conn:
        # as of AS_OF, before it was lost, it was open: scored again, not closed
        earlier = scoring.score(conn, lead_ids=[lead], as_of=AS_OF)
        assert (earlier.scored, earlier.closed) == (1, 0)
        result = scoring.score(conn)  # today it is lost
    assert result.closed == 1  # only the one that still carried a score
    score, entry = _entry(trained_db, lead)
    assert score is None
    assert entry["values"]["outcome"] == "lost"
    assert entry["values"]["summary"] == f"lost on {lost_at.astimezone(AS_OF.tzinfo):%Y-%m-%d}"
    assert _entry(trained_db, untouched) == (None, None)


def test_a_named_closed_lead_is_not_scored_and_its_explanation_shows_no_score(
    trained_db: Database,
) -> None:
    converted = str(trained_db.scalar(CLOSED, ("converted",)))
    lost = str(trained_db.scalar(CLOSED, ("lost",)))
    open_lead = str(trained_db.scalar(CLOSED, ("open",)))
    with trained_db.connect() as conn:
        result = scoring.score(conn, lead_ids=[converted, lost, open_lead], as_of=AS_OF)
        assert (result.scored, result.closed) == (1, 2)
        found = scoring.explain(conn, converted).to_dict()
        still_open = scoring.explain(conn, open_lead).to_dict()
    assert _entry(trained_db, converted)[0] is None and _entry(trained_db, lost)[0] is None
    assert _entry(trained_db, open_lead)[0] is not None
    assert found["score"] is None and found["tier"] is None
    assert found["outcome"]["outcome"] == "converted"
    assert found["outcome"]["summary"].startswith("converted on 20")
    assert any("no chance to convert" in w for w in found["warnings"])
    assert 0 < still_open["score"] < 1 and "outcome" not in still_open


def test_the_cli_says_what_a_closed_lead_is_instead_of_a_score(trained_db: Database) -> None:
    converted = str(trained_db.scalar(CLOSED, ("converted",)))
    scored = cli(trained_db, "ai", "score", "--lead", converted, "--as-of", DAY)
    assert scored.returncode == 0, scored.stderr
    assert "scored 0 leads" in scored.stdout and "1 converted or lost leads" in scored.stdout
    as_json = json.loads(
        cli(trained_db, "ai", "score", "--lead", converted, "--as-of", DAY, "--json").stdout
    )
    assert (as_json["scored"], as_json["closed"]) == (0, 1)
    text = cli(trained_db, "ai", "explain", converted)
    assert text.returncode == 0, text.stderr
    assert "not scored: converted on 20" in text.stdout
    assert "% of converting" not in text.stdout
    explained = json.loads(cli(trained_db, "ai", "explain", converted, "--json").stdout)
    assert explained["score"] is None and explained["outcome"]["outcome"] == "converted"


TREND_ROWS = "SELECT count(*) FROM lead_score_history"


def test_the_trend_grows_only_when_a_score_moves(trained_db: Database) -> None:
    with trained_db.connect() as conn:
        first = scoring.score(conn, as_of=AS_OF)
    assert trained_db.scalar(TREND_ROWS) == first.scored  # a first point for every lead
    before = dict(trained_db.execute("SELECT id::text, ai_score FROM leads"))
    with trained_db.connect() as conn:
        scoring.score(conn, as_of=AS_OF)  # the same scores: nothing new
    assert trained_db.scalar(TREND_ROWS) == first.scored
    later = AS_OF.replace(month=AS_OF.month + 2)  # two months older: many scores move
    with trained_db.connect() as conn:
        scoring.score(conn, as_of=later)
    after = dict(trained_db.execute("SELECT id::text, ai_score FROM leads"))
    moved = [k for k, v in after.items() if v is not None and before[k] is not None
             and abs(v - before[k]) >= 0.0101]  # fmt: skip
    still = [k for k, v in after.items() if v is not None and before[k] is not None
             and abs(v - before[k]) < 0.0099]  # fmt: skip
    assert moved and still
    lead = moved[0]
    with trained_db.connect() as conn:
        points = trend.trend(conn, lead)
        assert len(trend.trend(conn, still[0])) == 1
        with pytest.raises(NotFound):
            trend.trend(conn, "3f2b8c1e-7d4a-4f6b-9a51-2c0e8d7b6a10")
    assert len(points) == 2 and points[0].scored_at <= points[1].scored_at
    assert [round(p.score, 4) for p in points] == [round(before[lead], 4), round(after[lead], 4)]
    assert {p.model_version for p in points} == {first.version}
    shown = cli(trained_db, "ai", "score", "--lead", lead, "--as-of", later.date().isoformat())
    assert shown.returncode == 0, shown.stderr
    assert f"trend of {lead}: " in shown.stdout and shown.stdout.count(" → ") >= 1
    data = json.loads(cli(trained_db, "ai", "score", "--lead", lead, "--json").stdout)
    assert [p["score"] for p in data["trends"][lead]][:2] == [round(p.score, 4) for p in points]


def test_todays_scores_are_calibrated_on_replays_of_past_days(trained_db: Database) -> None:
    params = trained_db.scalar("SELECT params FROM ai_models WHERE active")
    replay = params["replay"]
    assert len(replay["days"]) >= 2 and replay["observations"] > 1000
    a, _b = replay["platt"]
    assert a > 0
    # judged on the newest replayed day, which the fit did not see: each decile's mean
    # score close to the rate its leads converted at. The 0.05 is the bench's
    # target (5,000 leads, bench/RESULTS.md); a decile here holds some 40 leads, whose
    # observed rate has a sampling sd of up to 0.07 by itself (on 11 seeds, 0.05 failed
    # on about half, with the previous generator as with this one). So each decile must
    # be within 0.05 or three standard errors of the rate its mean score predicts,
    # whichever is larger (for a top decile predicted at 0.19, 0.18): a decile off by
    # more than its own noise allows still fails.
    table = replay["reliability"]
    assert len(table) == 10 and sum(row["n"] for row in table) > 300
    for row in table:
        p, n = row["predicted"], row["n"]
        bound = max(0.05, 3 * math.sqrt(p * (1 - p) / n))
        assert abs(p - row["observed"]) <= bound, (row, bound, table)
    assert replay["calibration_error"] <= replay["calibration_error_before"] + 0.01
    # scoring applies it, and an explanation still adds up to the score
    lead = str(trained_db.scalar(CLOSED, ("open",)))
    with trained_db.connect() as conn:
        found = scoring.explain(conn, lead, as_of=AS_OF)
    total = found.bias + sum(f.contribution for f in found.factors)
    assert abs(1 / (1 + math.exp(-total)) - found.score) < 1e-6


# Which leads were open at a past moment, read independently of the scoring's SQL: the
# status periods of migration 010's view (the period that holds the moment), conversions
# by their date.
OPEN_THEN = """
SELECT l.id::text FROM leads l
JOIN lead_status_periods p ON p.lead_id = l.id AND p.entered_at <= %s
     AND (p.left_at IS NULL OR p.left_at > %s)
JOIN lead_statuses s ON s.name = p.status
WHERE l.created_at <= %s AND s.category = 'open'
  AND (l.conversion_date IS NULL OR l.conversion_date > %s)
"""


def test_scoring_as_of_a_past_moment_reads_which_leads_were_open_then(
    trained_db: Database,
) -> None:
    then = AS_OF - timedelta(days=150)
    open_then = {str(r[0]) for r in trained_db.execute(OPEN_THEN, (then,) * 4)}
    later_converted = str(
        trained_db.scalar(
            "SELECT id FROM leads WHERE created_at <= %s AND conversion_date > %s "
            "ORDER BY id LIMIT 1",
            (then, then),
        )
    )
    later_lost = str(
        trained_db.scalar(
            "SELECT l.id FROM leads l WHERE l.status = 'lost' AND l.created_at <= %s AND "
            "(SELECT max(h.changed_at) FROM crm_history h WHERE h.row_id = l.id "
            " AND h.changes ? 'status') > %s ORDER BY l.id LIMIT 1",
            (then, then),
        )
    )
    converted_before = str(
        trained_db.scalar(
            "SELECT id FROM leads WHERE conversion_date <= %s ORDER BY id LIMIT 1", (then,)
        )
    )
    created_after = str(
        trained_db.scalar("SELECT id FROM leads WHERE created_at > %s ORDER BY id LIMIT 1", (then,))
    )
    assert {later_converted, later_lost} <= open_then
    assert not {converted_before, created_after} & open_then
    with trained_db.connect() as conn:
        result = scoring.score(conn, include_converted=True, as_of=then)
    scored = {
        str(r[0]) for r in trained_db.execute("SELECT id FROM leads WHERE ai_score IS NOT NULL")
    }
    # converted or lost today but open then: scored as of then, like every lead open then
    assert scored == open_then and result.scored == len(open_then)
    for lead in (later_converted, later_lost):
        score, entry = _entry(trained_db, lead)
        assert score is not None and entry["values"]["tier"] in "ABCD"
    # closed by then: its outcome as it stood then
    score, entry = _entry(trained_db, converted_before)
    assert score is None and entry["values"]["outcome"] == "converted"
    assert entry["values"]["closed_at"] <= then.strftime("%Y-%m-%dT%H:%M:%SZ")
    closed_then = trained_db.scalar(
        "SELECT count(*) FROM leads l WHERE l.created_at <= %s AND NOT l.id::text = ANY(%s)",
        (then, list(open_then)),
    )
    assert result.closed == closed_then
    # not yet created then: neither a score nor an outcome
    assert _entry(trained_db, created_after) == (None, None)
    # the CLI says the same (its --as-of goes to the same code)
    out = cli(trained_db, "ai", "score", "--as-of", then.isoformat(), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["scored"] == len(open_then)
    # explained as of then, a lead converted since is not closed
    with trained_db.connect() as conn:
        explained = scoring.explain(conn, later_converted, as_of=then)
    assert explained.outcome is None and explained.score is not None
