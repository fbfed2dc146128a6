"""The outbox (migration 013): one event per committed change, none for a rolled-back
one, conversion and merge with their own types, and the app role's writes still work."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from aicrm.crm import contacts, conversion, leads, merge, session
from aicrm.errors import InvalidInput, NotFound, UsageError
from aicrm.events import add_subscription, list_subscriptions, parse_events, replay
from tests.conftest import Database

EVENTS = """
SELECT type, record_kind, record_id, payload, actor FROM crm_events ORDER BY id
"""


def _events(db: Database) -> list[tuple[Any, ...]]:
    return db.execute(EVENTS)


def test_create_update_delete_write_one_event_each(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        with session.transaction(conn, "alice"):
            lead = leads.create_lead(conn, email="e@x.org", source="web")
        with session.transaction(conn, "bob"):
            leads.update_lead(conn, lead.id, {"status": "contacted"})
        with session.transaction(conn, "scorer"):
            leads.update_lead(conn, lead.id, {"ai_score": 0.4})  # ai_* only: no event
        with session.transaction(conn, "carol"):
            leads.delete_lead(conn, lead.id)
    found = _events(crm_db)
    assert [(t, k, r, a) for t, k, r, _, a in found] == [
        ("lead.created", "lead", lead.id, "alice"),
        ("lead.updated", "lead", lead.id, "bob"),
        ("lead.deleted", "lead", lead.id, "carol"),
    ]
    assert found[0][3]["record"]["email"] == "e@x.org"
    assert found[1][3]["changes"] == {"status": ["new", "contacted"]}
    assert found[1][3]["record"]["status"] == "contacted"
    assert found[2][3]["record"]["id"] == str(lead.id)


def test_a_rolled_back_change_emits_nothing(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        with session.transaction(conn):
            lead = leads.create_lead(conn, email="r@x.org")
        before = len(_events(crm_db))
        with pytest.raises(RuntimeError), session.transaction(conn):
            leads.update_lead(conn, lead.id, {"first_name": "Never"})
            raise RuntimeError("rolled back")
        assert leads.get_lead(conn, lead.id).first_name is None
    assert len(_events(crm_db)) == before


def test_conversion_emits_lead_converted_and_the_new_client(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        with session.transaction(conn):
            lead = leads.create_lead(conn, email="c@x.org", company_name="Acme")
            person = contacts.create_contact(conn, lead_id=lead.id, email="p@x.org")
        done = conversion.convert_lead(conn, lead.id, actor="closer")
    found = [e for e in _events(crm_db) if e[4] == "closer"]
    kinds = sorted((t, r) for t, _, r, _, _ in found)
    assert kinds == sorted(
        [
            ("client.created", done.client_id),
            ("lead.converted", lead.id),
            ("contact.updated", person.id),
        ]
    )
    converted = next(e for e in found if e[0] == "lead.converted")[3]
    assert converted["client_id"] == str(done.client_id)
    assert converted["changes"]["status"] == ["new", "converted"]


def test_one_trigger_writes_the_history_and_the_event_of_an_update(crm_db: Database) -> None:
    """Migration 016: the history's changes, less the ai_* columns the history records
    while aicrm.history_ai is on; an update of ai_* columns alone announces nothing."""
    with crm_db.connect() as conn:
        with session.transaction(conn, "alice"):
            lead = leads.create_lead(conn, email="h@x.org")
        with session.transaction(conn, "bob"):
            conn.execute("SELECT set_config('aicrm.history_ai', 'on', true)")
            leads.update_lead(conn, lead.id, {"status": "contacted", "ai_score": 0.7})
        with session.transaction(conn, "scorer"):
            conn.execute("SELECT set_config('aicrm.history_ai', 'on', true)")
            leads.update_lead(conn, lead.id, {"ai_score": 0.2})
    history = crm_db.execute(
        "SELECT actor, changes FROM crm_history WHERE row_id = %s AND operation = 'update'"
        " ORDER BY id",
        (lead.id,),
    )
    assert history == [
        ("bob", {"status": ["new", "contacted"], "ai_score": [None, 0.7]}),
        ("scorer", {"ai_score": [0.7, 0.2]}),
    ]
    updated = [(a, p["changes"]) for t, _, _, p, a in _events(crm_db) if t == "lead.updated"]
    assert updated == [("bob", {"status": ["new", "contacted"]})]
    assert (
        crm_db.scalar(
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'aicrm_events_%%'"
            " AND tgrelid IN ('leads'::regclass, 'clients'::regclass, 'contacts'::regclass)"
        )
        == 0
    )


def test_event_ids_are_time_ordered(crm_db: Database) -> None:
    """Migration 016: UUID version 7, whose first 48 bits are the millisecond, so that the
    unique index on event_id grows at its right edge."""
    with crm_db.connect() as conn:
        for n in range(3):
            with session.transaction(conn):
                leads.create_lead(conn, email=f"t{n}@x.org")
    rows = crm_db.execute(
        "SELECT event_id, (extract(epoch FROM clock_timestamp()) * 1000)::bigint"
        " FROM crm_events ORDER BY id"
    )
    ids = [row[0] for row in rows]
    assert {i.version for i in ids} == {7}
    stamps = [i.int >> 80 for i in ids]
    assert stamps == sorted(stamps)
    assert 0 <= rows[-1][1] - stamps[-1] < 60_000  # milliseconds since the Unix epoch


def test_bulk_conversion_emits_an_event_per_lead(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        with session.transaction(conn):
            made = [leads.create_lead(conn, email=f"b{i}@x.org") for i in range(5)]
        conversion.convert_leads(conn, [m.id for m in made], actor="bulk")
    found = [e for e in _events(crm_db) if e[4] == "bulk"]
    assert sorted(r for t, _, r, _, _ in found if t == "lead.converted") == sorted(
        m.id for m in made
    )
    assert sum(1 for e in found if e[0] == "client.created") == 5


def test_merge_emits_lead_merged_instead_of_deleted(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        with session.transaction(conn):
            keep = leads.create_lead(conn, email="k@x.org")
            other = leads.create_lead(conn, email="o@x.org", allow_duplicate=True, first_name="O")
        merge.merge_leads(conn, keep.id, [other.id], actor="merger")
    found = [e for e in _events(crm_db) if e[4] == "merger"]
    types = [(t, r) for t, _, r, _, _ in found]
    assert ("lead.merged", other.id) in types
    assert ("lead.deleted", other.id) not in types
    assert ("lead.updated", keep.id) in types  # its first_name was filled
    merged = next(e for e in found if e[0] == "lead.merged")[3]
    assert merged["kept_lead_id"] == str(keep.id) and merged["record"]["first_name"] == "O"


def test_fan_out_writes_deliveries_only_for_wanted_events(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        add_subscription(conn, "http://127.0.0.1:9/hook", "lead.created,client.*")
        add_subscription(conn, "http://127.0.0.1:9/all", "*")
        with session.transaction(conn):
            lead = leads.create_lead(conn, email="f@x.org")
            leads.update_lead(conn, lead.id, {"status": "contacted"})
        subs = {s.url: s for s in list_subscriptions(conn)}
    assert subs["http://127.0.0.1:9/hook"].pending == 1
    assert subs["http://127.0.0.1:9/all"].pending == 2
    assert "secret" not in subs["http://127.0.0.1:9/all"].to_dict()


def test_subscriptions_refuse_bad_input(crm_db: Database) -> None:
    assert parse_events("lead.converted, lead.*,lead.converted") == ["lead.converted", "lead.*"]
    with pytest.raises(InvalidInput, match=r"lead\.exploded"):
        parse_events("lead.exploded")
    with crm_db.connect() as conn:
        with pytest.raises(InvalidInput, match="URL"):
            add_subscription(conn, "ftp://x", "*")
        with pytest.raises(InvalidInput, match="secret"):
            add_subscription(conn, "http://x/", "*", secret="short")
        with pytest.raises(UsageError):
            replay(conn)
        with pytest.raises(NotFound):
            replay(conn, event_id=uuid.uuid4())


def test_the_outbox_cannot_be_written_or_its_functions_called_directly(crm_db: Database) -> None:
    with crm_db.connect() as conn, pytest.raises(psycopg.Error, match="trigger"):
        conn.execute("SELECT aicrm_events_update()")


def test_activities_emit_events_and_follow_their_lead(crm_db: Database) -> None:
    from aicrm.crm import activities

    with crm_db.connect() as conn:
        with session.transaction(conn, "agent"):
            lead = leads.create_lead(conn, email="act@x.org", company_name="Act")
            call = activities.add_activity(conn, kind="call", subject="Intro", lead_id=lead.id)
            task = activities.add_activity(conn, kind="task", subject="Follow up", lead_id=lead.id)
        with session.transaction(conn, "agent"):
            activities.complete_task(conn, task.id)
        done = conversion.convert_lead(conn, lead.id, actor="closer")
    found = [(t, r, p) for t, _, r, p, _ in _events(crm_db) if t.startswith("activity.")]
    assert [(t, r) for t, r, _ in found[:2]] == [
        ("activity.created", call.id),
        ("activity.created", task.id),
    ]
    completed = found[2]
    assert completed[0] == "activity.updated" and completed[1] == task.id
    assert completed[2]["changes"]["done_at"][0] is None
    moved = {r: p for t, r, p in found[3:] if t == "activity.updated"}
    assert set(moved) == {call.id, task.id}  # they moved to the client with the lead
    assert moved[call.id]["record"]["client_id"] == str(done.client_id)
