"""Engagement features (issue #17 point 6): activities count only from when they were
logged, a converted lead's moved activities still count for its past, the model learns
them, and explanations say them in plain words."""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from aicrm.ai import _features as F, scoring
from aicrm.ai._engagement import engagement_words
from aicrm.crm import conversion
from tests.ai.data import AS_OF, L, insert
from tests.conftest import Database

ENGAGED = [
    F.Feature("calls_14d", "numeric"),
    F.Feature("calls_90d", "numeric"),
    F.Feature("meetings_14d", "numeric"),
    F.Feature("days_since_activity", "numeric"),
    F.Feature("overdue_tasks", "numeric"),
]
ACTIVITY = """
INSERT INTO activities (kind, subject, lead_id, client_id, created_at, due_at, done_at)
VALUES (%s, 'x', %s, %s, %s, %s, %s)
"""


def log(
    conn: psycopg.Connection[Any], kind: str, at: datetime, *, lead: uuid.UUID | None = None,
    client: uuid.UUID | None = None, due: datetime | None = None, done: datetime | None = None,
) -> None:  # fmt: skip
    conn.execute(ACTIVITY, (kind, lead, client, at, due, done))


def values(conn: psycopg.Connection[Any], lead: uuid.UUID, at: datetime) -> dict[str, float]:
    frame = F.scoring_frame(conn, ENGAGED, as_of=at, lead_ids=[str(lead)], include_converted=True)
    assert len(frame) == 1
    return {f.name: float(frame.values[0, j]) for j, f in enumerate(ENGAGED)}


def test_an_activity_counts_only_from_when_it_was_logged(crm_db: Database) -> None:
    lead = L("web", age=60)
    t = AS_OF - timedelta(days=10)
    with crm_db.connect() as conn:
        insert(conn, [lead])
        with conn.transaction():
            log(conn, "call", t - timedelta(days=30), lead=lead.id)
            log(conn, "call", t - timedelta(days=3), lead=lead.id)
            log(conn, "meeting", t - timedelta(days=5), lead=lead.id)
            # logged after t: invisible at t
            log(conn, "call", t + timedelta(days=1), lead=lead.id)
            log(conn, "meeting", t + timedelta(hours=1), lead=lead.id)
            # a task due before t, done only after it: overdue at t, not later
            log(conn, "task", t - timedelta(days=8), lead=lead.id,
                due=t - timedelta(days=2), done=t + timedelta(days=2))  # fmt: skip
        at_t = values(conn, lead.id, t)
        later = values(conn, lead.id, t + timedelta(days=3))
        before_any = values(conn, lead.id, t - timedelta(days=40))
    assert at_t == {"calls_14d": 1, "calls_90d": 2, "meetings_14d": 1,
                    "days_since_activity": pytest.approx(3), "overdue_tasks": 1}  # fmt: skip
    # later: the call and meeting logged after t count, and the task is done (its
    # done_at is the last activity, one day before)
    assert later == {"calls_14d": 2, "calls_90d": 3, "meetings_14d": 2,
                     "days_since_activity": pytest.approx(1), "overdue_tasks": 0}  # fmt: skip
    # nothing logged yet: zero counts, and "days since" missing (not zero)
    assert before_any["calls_90d"] == 0 and math.isnan(before_any["days_since_activity"])


def test_a_converted_leads_moved_activities_count_for_its_past_not_the_clients_own(
    crm_db: Database,
) -> None:
    now: datetime = crm_db.scalar("SELECT now()")
    lead = L("web", age=30)
    with crm_db.connect() as conn:
        insert(conn, [lead], as_of=now)
        with conn.transaction():
            log(conn, "call", now - timedelta(days=20), lead=lead.id)
            log(conn, "call", now - timedelta(days=2), lead=lead.id)
        done = conversion.convert_lead(conn, lead.id, actor="test")  # moves them (012)
        with conn.transaction():
            log(conn, "call", now + timedelta(minutes=1), client=done.client_id)  # the client's
        moved = conn.execute(
            "SELECT count(*) FROM activities WHERE client_id = %s", (done.client_id,)
        ).fetchone()
        assert moved == (3,)
        found = values(conn, lead.id, now + timedelta(minutes=2))
    assert found["calls_14d"] == 1 and found["calls_90d"] == 2
    assert found["days_since_activity"] == pytest.approx(2, abs=0.01)


def test_engagement_is_said_in_plain_words() -> None:
    assert engagement_words("calls_14d", 3.0) == "3 calls in the last 14 days"
    assert engagement_words("meetings_90d", 1.0) == "1 meeting in the last 90 days"
    assert engagement_words("emails_14d", 0.0) == "no emails in the last 14 days"
    assert engagement_words("days_since_activity", 40.6) == "no activity for 40 days"
    assert engagement_words("days_since_activity", None) == "no activity yet"
    assert engagement_words("days_since_activity", math.nan) == "no activity yet"
    assert engagement_words("overdue_tasks", 2.0) == "2 overdue tasks"
    assert engagement_words("status", "new") is None
    assert engagement_words("calls_14d", "many") is None
    stored = scoring.stored_factors({"factors": [["calls_14d", 3, 0.8], ["status", "new", 0.1]]})
    assert stored[0]["words"] == "3 calls in the last 14 days" and "words" not in stored[1]


@pytest.mark.slow
def test_the_model_learns_engagement_and_the_explanation_names_it(
    trained_db: Database,
) -> None:
    with trained_db.connect() as conn:
        names = [f.name for f in scoring.load_active(conn).features]
    assert {"calls_14d", "calls_90d", "meetings_14d", "days_since_activity",
            "overdue_tasks"} <= set(names)  # fmt: skip
    busy_id: uuid.UUID = trained_db.scalar(
        "SELECT id FROM leads WHERE status = 'contacted' AND created_at < %s ORDER BY id LIMIT 1",
        (AS_OF - timedelta(days=20),),
    )
    with trained_db.connect() as conn:
        with conn.transaction():
            conn.execute("DELETE FROM activities WHERE lead_id = %s", (busy_id,))
            for day in range(1, 7):
                log(conn, "call", AS_OF - timedelta(days=day), lead=busy_id)
            log(conn, "meeting", AS_OF - timedelta(days=2), lead=busy_id)
        busy = scoring.explain(conn, str(busy_id), as_of=AS_OF)
        with conn.transaction():
            conn.execute("DELETE FROM activities WHERE lead_id = %s", (busy_id,))
        quiet = scoring.explain(conn, str(busy_id), as_of=AS_OF)
    calls = next(f for f in busy.factors if f.feature == "calls_14d")
    assert calls.words.startswith("6 calls in the last 14 days — raises the odds")
    # the engagement is what drives it: among the top factors, and the score higher
    top = [f.feature for f in busy.factors[:3]]
    assert set(top) & {"calls_14d", "calls_90d", "meetings_14d", "meetings_90d",
                       "days_since_activity"}, busy.factors[:3]  # fmt: skip
    assert busy.score > quiet.score
    silent = next(f for f in quiet.factors if f.feature == "days_since_activity")
    assert silent.words.startswith("No activity yet")
