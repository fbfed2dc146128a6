"""Temporal tracking (timeline, as-of, status periods) and merging duplicates."""

from __future__ import annotations

from datetime import timedelta

import pytest

from aicrm.crm import contacts, conversion, history, leads, merge, session
from aicrm.crm.records import Lead
from aicrm.errors import Conflict, InvalidInput, NotFound
from tests.conftest import Database


def test_every_change_is_recorded_with_its_actor_and_diff(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        with session.transaction(conn, "alice"):
            lead = leads.create_lead(conn, email="h@x.org", source="web")
        with session.transaction(conn, "bob"):
            leads.update_lead(conn, lead.id, {"status": "contacted", "ai_score": 0.5})
        with session.transaction(conn, "carol"):
            leads.update_lead(conn, lead.id, {"ai_summary": "only ai"})
        with session.transaction(conn, "dave"):
            leads.delete_lead(conn, lead.id)
        entries = history.timeline(conn, "leads", lead.id)
    assert [(e.operation, e.actor) for e in entries] == [
        ("insert", "alice"),
        ("update", "bob"),
        ("delete", "dave"),
    ]
    assert entries[0].changes["email"] == "h@x.org" and "ai_score" not in entries[0].changes
    assert entries[1].changes == {"status": ["new", "contacted"]}


def test_as_of_rebuilds_the_record_at_a_moment(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        with session.transaction(conn):
            lead = leads.create_lead(conn, email="t@x.org", source="web")
        created = crm_db.scalar("SELECT changed_at FROM crm_history WHERE row_id = %s", (lead.id,))
        with session.transaction(conn):
            leads.update_lead(conn, lead.id, {"status": "qualified", "source": "partner"})
        with session.transaction(conn):
            leads.update_lead(conn, lead.id, {"status": "lost"})
        updates = [e.changed_at for e in history.timeline(conn, "leads", lead.id)][1:]
        first = history.as_of(conn, Lead, lead.id, created)
        assert (first.status, first.source) == ("new", "web")
        middle = history.as_of(conn, Lead, lead.id, updates[0])
        assert (middle.status, middle.source) == ("qualified", "partner")
        now = history.as_of(conn, Lead, lead.id, updates[1] + timedelta(seconds=1))
        assert now.status == "lost"
        with pytest.raises(NotFound, match="did not exist yet"):
            history.as_of(conn, Lead, lead.id, created - timedelta(seconds=1))


def test_status_periods_view_gives_time_in_each_status(crm_db: Database) -> None:
    crm_db.execute(
        "INSERT INTO leads (id, email, status, created_at) VALUES "
        "('00000000-0000-0000-0000-0000000000aa', 'old@x.org', 'qualified', "
        " now() - interval '10 days');"
        "INSERT INTO crm_history (table_name, row_id, operation, changed_at, actor, changes) "
        "VALUES ('leads', '00000000-0000-0000-0000-0000000000aa', 'update', "
        " now() - interval '4 days', "
        '\'t\', \'{"status": ["new", "qualified"]}\');'
        # As if it were created before the history began:
        "DELETE FROM crm_history WHERE operation = 'insert'"
    )
    rows = crm_db.execute(
        "SELECT status, round(days_in_status::numeric, 1) FROM lead_status_periods "
        "WHERE lead_id = '00000000-0000-0000-0000-0000000000aa' ORDER BY entered_at"
    )
    assert [(s, float(d)) for s, d in rows] == [("new", 6.0), ("qualified", 4.0)]


def test_ai_columns_are_left_out_of_history_unless_asked(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        with session.transaction(conn):
            lead = leads.create_lead(conn, email="ai@x.org")
        with session.transaction(conn):
            leads.update_lead(conn, lead.id, {"ai_score": 0.3})
        assert len(history.timeline(conn, "leads", lead.id)) == 1
        with session.transaction(conn):
            conn.execute("SELECT set_config('aicrm.history_ai', 'on', true)")
            leads.update_lead(conn, lead.id, {"ai_score": 0.7})
        assert history.timeline(conn, "leads", lead.id)[-1].changes["ai_score"] == [0.3, 0.7]


def test_merge_fills_moves_deletes_and_records(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        with session.transaction(conn):
            keep = leads.create_lead(conn, email="m@x.org", attributes={"a": 1})
            other = leads.create_lead(
                conn,
                email="M@x.org",
                first_name="Mia",
                company_name="Co",
                attributes={"a": 2, "b": 3},
                allow_duplicate=True,
            )
            person = contacts.create_contact(conn, lead_id=other.id, email="asst@x.org")
        with session.transaction(conn):
            leads.update_lead(conn, other.id, {"status": "contacted"})
        result = merge.merge_leads(conn, keep.id, [other.id], actor="merger")
        assert result.contacts_moved == 1
        kept = result.kept
        assert (kept.first_name, kept.company_name, kept.email) == ("Mia", "Co", "m@x.org")
        assert kept.attributes == {"a": 1, "b": 3}
        assert contacts.get_contact(conn, person.id).lead_id == keep.id
        with pytest.raises(NotFound):
            leads.get_lead(conn, other.id)
        moved = [e for e in history.timeline(conn, "leads", keep.id) if e.operation == "update"]
        assert moved and moved[0].changes["status"] == ["new", "contacted"]
    row = crm_db.execute("SELECT kept_lead_id, merged_lead_id, actor FROM lead_merges")
    assert row == [(keep.id, other.id, "merger")]


def test_merge_refuses_converted_leads_and_bad_requests(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        with session.transaction(conn):
            a = leads.create_lead(conn, email="a@x.org")
            b = leads.create_lead(conn, email="b@x.org")
        conversion.convert_lead(conn, b.id)
        with pytest.raises(Conflict, match="converted"):
            merge.merge_leads(conn, a.id, [b.id])
        with pytest.raises(InvalidInput):
            merge.merge_leads(conn, a.id, [a.id])
        with pytest.raises(InvalidInput):
            merge.merge_leads(conn, a.id, [])
    assert crm_db.scalar("SELECT count(*) FROM leads") == 2
