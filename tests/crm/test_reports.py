"""Reports against a small data set written by hand, with the expected values worked
out by hand (see the comments)."""

from __future__ import annotations

import uuid

import pytest

from aicrm.crm import reports
from aicrm.errors import InvalidInput, NotFound
from tests.conftest import Database

# Six leads and three clients. Client Acme has two leads (L1, L6), Beta one (L3),
# Direct none (it never was a lead).
L1, L2, L3, L4, L5, L6 = (uuid.UUID(int=n) for n in range(1, 7))
ACME, BETA, DIRECT = (uuid.UUID(int=100 + n) for n in range(3))

CLIENTS = """
INSERT INTO clients (id, name, created_at) VALUES
    (%s, 'Acme', '2024-01-08'), (%s, 'Beta', '2024-02-21'), (%s, 'Direct', '2024-01-01')
"""
LEADS = """
INSERT INTO leads (id, email, source, status, created_at, is_converted,
                   converted_to_client_id, conversion_date) VALUES
    (%s, 'l1@a.io', 'web',      'converted',   '2024-01-01', true,  %s,   '2024-01-11'),
    (%s, 'l2@a.io', 'web',      'lost',        '2024-01-01', false, NULL, NULL),
    (%s, 'l3@b.io', 'referral', 'converted',   '2024-02-01', true,  %s,   '2024-02-21'),
    (%s, 'l4@b.io', 'referral', 'qualified',   '2024-03-01', false, NULL, NULL),
    (%s, 'l5@c.io', NULL,       'new',         '2024-03-01', false, NULL, NULL),
    (%s, 'l6@a.io', 'web',      'converted',   '2024-01-05', true,  %s,   '2024-01-08')
"""
# The status changes, in days after created_at; no insert rows, so every lead starts
# in the status its first change left, at its created_at. L6 skips 'contacted'.
CHANGES = {
    L1: [(2, "new", "contacted"), (5, "contacted", "qualified"), (10, "qualified", "converted")],
    L2: [(1, "new", "contacted"), (4, "contacted", "lost")],
    L3: [(3, "new", "contacted"), (7, "contacted", "qualified"), (20, "qualified", "converted")],
    L4: [(1, "new", "contacted"), (2, "contacted", "qualified")],
    L6: [(1, "new", "qualified"), (3, "qualified", "converted")],
}
HISTORY = """
INSERT INTO crm_history (table_name, row_id, operation, changed_at, actor, changes)
SELECT 'leads', l.id, 'update', l.created_at + %s * interval '1 day', 'test',
       jsonb_build_object('status', jsonb_build_array(%s::text, %s::text))
FROM leads l WHERE l.id = %s
"""


def small_crm(db: Database) -> None:
    """Write the data set; the history holds exactly the changes above."""
    with db.connect() as conn, conn.transaction():
        conn.execute(CLIENTS, (ACME, BETA, DIRECT))
        conn.execute(LEADS, (L1, ACME, L2, L3, BETA, L4, L5, L6, ACME))
        conn.execute("DELETE FROM crm_history")  # what the triggers recorded just now
        for lead, changes in CHANGES.items():
            for days, old, new in changes:
                conn.execute(HISTORY, (days, old, new, lead))


@pytest.fixture
def small(crm_db: Database) -> Database:
    small_crm(crm_db)
    return crm_db


def test_conversion_summary(small: Database) -> None:
    with small.connect() as conn:
        rows = reports.conversion_summary(conn)
    assert [r.to_dict() for r in rows] == [
        # web: L1, L2, L6; L1 took 10 days, L6 3: mean 6.5
        {"source": "web", "total_leads": 3, "converted_leads": 2, "active_leads": 1,
         "conversion_rate": pytest.approx(2 / 3), "avg_days_to_convert": pytest.approx(6.5)},
        {"source": "referral", "total_leads": 2, "converted_leads": 1, "active_leads": 1,
         "conversion_rate": 0.5, "avg_days_to_convert": pytest.approx(20.0)},
        {"source": "unknown", "total_leads": 1, "converted_leads": 0, "active_leads": 1,
         "conversion_rate": 0.0, "avg_days_to_convert": None},
    ]  # fmt: skip


def test_client_history(small: Database) -> None:
    with small.connect() as conn:
        acme = reports.client_history(conn, str(ACME))
        direct = reports.client_history(conn, DIRECT)
        with pytest.raises(NotFound, match="No client has id"):
            reports.client_history(conn, uuid.UUID(int=999))
        with pytest.raises(InvalidInput, match="not a valid client id"):
            reports.client_history(conn, "acme")
    # In conversion order: L6 (2024-01-08, 3 days), then L1 (2024-01-11, 10 days).
    assert [(r.lead_id, r.client_name, r.lead_email) for r in acme] == [
        (L6, "Acme", "l6@a.io"),
        (L1, "Acme", "l1@a.io"),
    ]
    assert [r.days_to_convert for r in acme] == pytest.approx([3.0, 10.0])
    assert acme[0].to_dict()["lead_id"] == str(L6)
    assert acme[0].to_dict()["conversion_date"].startswith("2024-01-08")
    assert direct == []


def test_status_funnel(small: Database) -> None:
    with small.connect() as conn:
        stages = {s.status: s for s in reports.status_funnel(conn)}
    assert list(stages) == ["new", "contacted", "qualified", "converted", "unqualified", "lost"]
    # Furthest stage: L1, L3, L6 converted; L4 qualified; L2 contacted; L5 new.
    assert {s: stages[s].reached for s in stages} == {
        "new": 6, "contacted": 5, "qualified": 4, "converted": 3, "unqualified": 0, "lost": 1,
    }  # fmt: skip
    assert {s: stages[s].current for s in stages} == {
        "new": 1, "contacted": 0, "qualified": 1, "converted": 3, "unqualified": 0, "lost": 1,
    }  # fmt: skip
    # 1 - 5/6, 1 - 4/5, 1 - 3/4; none for the first stage and the exits.
    assert {s: stages[s].drop_off for s in stages} == {
        "new": None, "contacted": pytest.approx(1 / 6), "qualified": pytest.approx(0.2),
        "converted": pytest.approx(0.25), "unqualified": None, "lost": None,
    }  # fmt: skip
    # Finished periods only: new 2, 1, 3, 1, 1 -> 1; contacted 3, 3, 4, 1 -> 3;
    # qualified 5, 13, 2 -> 5; nobody left converted or lost (L5, L4 are still in theirs).
    assert {s: stages[s].median_days for s in stages} == {
        "new": pytest.approx(1.0), "contacted": pytest.approx(3.0),
        "qualified": pytest.approx(5.0), "converted": None, "unqualified": None, "lost": None,
    }  # fmt: skip
    assert stages["contacted"].to_dict()["status"] == "contacted"


def test_reports_on_an_empty_crm(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        assert reports.conversion_summary(conn) == []
        stages = reports.status_funnel(conn)
    assert [(s.reached, s.current, s.drop_off, s.median_days) for s in stages] == [
        (0, 0, None, None)
    ] * 6
