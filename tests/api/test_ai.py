"""Scores and explanations over real HTTP (aicrm.ai.scoring)."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import Live, assert_problem, unique


def test_scores_and_explanations(live: Live, api: httpx.Client) -> None:
    scoring = pytest.importorskip("aicrm.ai.scoring")
    source = unique("ai")
    leads = [api.post("/api/leads", json={"first_name": f"S{n}", "source": source}).json()
             for n in range(4)]  # fmt: skip
    before = api.get(f"/api/leads/{leads[0]['id']}/explanation")
    if before.status_code == 409:
        pytest.skip(f"the database has no AI schema: {before.json()['detail']}")
    assert_problem(before, 404)  # no model yet
    assert_problem(api.post("/api/scores", json={}), 404)

    # Leads old enough to be examples (the horizon is 90 days); few: a prior model.
    live.db.execute(
        "UPDATE leads SET created_at = now() - interval '200 days' WHERE source = %s", (source,)
    )
    with live.db.connect() as conn:
        scoring.train(conn, actor="trainer")
        conn.commit()
    assert_problem(live.client("read").post("/api/scores", json={}), 403)
    scored = api.post("/api/scores", json={"lead_ids": [lead["id"] for lead in leads]})
    assert scored.status_code == 200, scored.text
    assert scored.json()["scored"] == 4
    lead = api.get(f"/api/leads/{leads[0]['id']}").json()
    assert lead["ai_score"] is not None and "lead_scoring" in lead["ai_annotations"]
    trend = live.client("read").get(f"/api/leads/{leads[0]['id']}/scores")
    assert trend.status_code == 200, trend.text
    points = trend.json()["points"]  # migration 011: the first score is the trend's start
    assert len(points) == 1 and abs(points[0]["score"] - lead["ai_score"]) < 1e-4
    assert points[0]["model_version"] == scored.json()["model_version"]
    assert_problem(api.get("/api/leads/00000000-0000-4000-8000-0000000000ab/scores"), 404)

    explained = live.client("read").get(f"/api/leads/{leads[0]['id']}/explanation")
    assert explained.status_code == 200, explained.text
    body = explained.json()
    assert body["lead_id"] == leads[0]["id"] and 0 <= body["score"] <= 1
    assert isinstance(body["factors"], list)
    missing = "00000000-0000-4000-8000-0000000000aa"
    assert_problem(api.get(f"/api/leads/{missing}/explanation"), 404)

    # A lost lead has an outcome, not a chance to convert: not scored, not shown as one.
    live.db.execute("UPDATE leads SET status = 'lost' WHERE id = %s", (leads[1]["id"],))
    closed = api.post("/api/scores", json={"lead_ids": [leads[1]["id"]]})
    assert closed.status_code == 200, closed.text
    assert (closed.json()["scored"], closed.json()["closed"]) == (0, 1)
    lost = api.get(f"/api/leads/{leads[1]['id']}").json()
    assert lost["ai_score"] is None
    assert lost["ai_annotations"]["lead_scoring"]["values"]["outcome"] == "lost"
    why = live.client("read").get(f"/api/leads/{leads[1]['id']}/explanation")
    assert why.status_code == 200, why.text
    assert why.json()["score"] is None and why.json()["tier"] is None
    assert why.json()["outcome"]["summary"].startswith("lost on 20")


def test_analysis(live: Live, api: httpx.Client) -> None:
    pytest.importorskip("aicrm.ai.analysis")
    source = unique("an")
    leads = [api.post("/api/leads", json={"first_name": f"A{n}", "source": source}).json()
             for n in range(4)]  # fmt: skip
    live.db.execute(
        "UPDATE leads SET created_at = now() - interval '200 days' WHERE source = %s", (source,)
    )
    assert api.post(f"/api/leads/{leads[0]['id']}/convert").status_code == 200
    report = live.client("read").get("/api/analysis")
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["horizon_days"] == 90 and body["leads"] >= 4 and body["labelled"] >= 4
    assert any(row.get("segment") == source for row in body["by_source"]), body["by_source"]
    body = assert_problem(api.get("/api/analysis", params={"horizon": 0}), 422)
    assert body["errors"][0]["field"] == "horizon"
    body = assert_problem(api.get("/api/analysis", params={"as_of": "0001-01-01T00:00:00Z"}), 422)
    assert body["errors"][0]["field"] == "as_of"
    assert_problem(live.client(None).get("/api/analysis"), 401)
